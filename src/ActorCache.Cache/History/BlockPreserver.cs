using System.Buffers;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// The copy in copy-on-write: reads the backing content of the blocks a destage step is about to
/// overwrite while a protected point still reads them, appends it to the <see cref="SnapshotStore"/> and
/// makes it durable, all before the step writes the backing.
/// </summary>
internal sealed class BlockPreserver(IBlockTarget backing, SnapshotStore store, CacheHealth health)
{
    private const int BlockShift = LogFormat.BlockShift;

    public async Task PreserveAsync(List<long> blocks, long until)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(SnapshotStore.MaxEntries << BlockShift);
        try
        {
            for (var start = 0; start < blocks.Count; start += SnapshotStore.MaxEntries)
            {
                var count = Math.Min(SnapshotStore.MaxEntries, blocks.Count - start);
                // Neighbouring blocks are read together.
                var i = 0;
                while (i < count)
                {
                    var run = 1;
                    while (i + run < count && blocks[start + i + run] == blocks[start + i] + run) run++;
                    await backing.ReadAsync(blocks[start + i] << BlockShift, buffer.AsMemory(i << BlockShift, run << BlockShift)).ConfigureAwait(false);
                    i += run;
                }
                store.Append(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(blocks).Slice(start, count), until,
                    buffer.AsSpan(0, count << BlockShift));
            }
            store.Sync();
            health.CountPreserved(blocks.Count);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
