using System.Buffers;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Copies a destage step from the log to the backing: each 4 MiB extent's blocks in block order,
/// neighbours coalesced into one I/O (trims become hole punches), the extents of a step in parallel on
/// the thread pool, so a slow backing (a remote or delayed disk) serves many writes at once. A file
/// backing takes each run straight from the log segment inside the kernel (copy_file_range): no read
/// into a buffer and write back out of it, which past the retention cap every cached write pays for.
/// A regular file takes its extents one after another instead: the kernel holds the file's lock for each
/// write, so parallel writers only spun and slept on it (about a tenth of a resyncing secondary's CPU, `perf`).
/// </summary>
internal sealed class DestageWriter(ILogMedium medium, IBlockTarget backing)
{
    private const int BlockSize = LogFormat.BlockSize;
    private const int BlockShift = LogFormat.BlockShift;
    private const int ChunkBlocks = 256; // 1 MiB per backing write at most

    /// <summary>Writes every block of the step; the first failure fails the step (after the other extents finish).</summary>
    public Task WriteAsync(List<DestageBlock> blocks)
    {
        if (_copier is { SerializesWrites: true })
            return Task.Run(async () =>
            {
                foreach (var (from, count) in Extents(blocks)) await WriteExtentAsync(blocks, from, count).ConfigureAwait(false);
            });
        var extents = new List<Task>();
        foreach (var (from, count) in Extents(blocks)) extents.Add(Task.Run(() => WriteExtentAsync(blocks, from, count)));
        return Task.WhenAll(extents);
    }

    /// <summary>The step's blocks cut at 4 MiB extent boundaries: (first index, count).</summary>
    private static IEnumerable<(int From, int Count)> Extents(List<DestageBlock> blocks)
    {
        var start = 0;
        for (var i = 1; i <= blocks.Count; i++)
        {
            if (i < blocks.Count && blocks[i].Block >> BlockIndex.ExtentBlocksShift == blocks[start].Block >> BlockIndex.ExtentBlocksShift) continue;
            yield return (start, i - start);
            start = i;
        }
    }

    private readonly IFileRangeCopy? _copier = backing as IFileRangeCopy;

    /// <summary>Copies a run of log blocks to the backing in the kernel, if both are files that allow it and the run lies in one segment.</summary>
    private bool TryCopy(long address, int length, long offset)
    {
        // (A run can cross into the next segment when a batch ended exactly at a segment's end.)
        if (_copier is null || address % medium.SegmentSize + length > medium.SegmentSize) return false;
        if (medium.SegmentHandle(address / medium.SegmentSize) is not { } segment) return false;
        try
        {
            return _copier.TryCopyFrom(segment, address % medium.SegmentSize, offset, length);
        }
        catch (ObjectDisposedException)
        {
            return false; // the segment went meanwhile: the read below says so
        }
    }

    private async Task WriteExtentAsync(List<DestageBlock> blocks, int from, int count)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(ChunkBlocks, count) * BlockSize);
        try
        {
            var i = from;
            var end = from + count;
            while (i < end)
            {
                var (start, entry, deallocate) = blocks[i];
                var kind = BlockIndex.LocationOf(entry);
                // The run: neighbouring blocks of the same kind (log data also consecutive in the log, up to one buffer).
                var runEnd = i + 1;
                while (runEnd < end && blocks[runEnd].Block == start + (runEnd - i) && BlockIndex.LocationOf(blocks[runEnd].Entry) == kind &&
                       (kind == BlockLocation.Log
                           ? BlockIndex.ValueOf(blocks[runEnd].Entry) == BlockIndex.ValueOf(entry) + (runEnd - i) && (runEnd - i + 1) * BlockSize <= buffer.Length
                           : blocks[runEnd].Deallocate == deallocate))
                    runEnd++;
                var run = runEnd - i;
                if (kind == BlockLocation.Log)
                {
                    var length = run * BlockSize;
                    if (TryCopy(BlockIndex.ValueOf(entry) << BlockShift, length, start << BlockShift))
                    {
                        i = runEnd;
                        continue;
                    }
                    if (!medium.TryRead(BlockIndex.ValueOf(entry) << BlockShift, buffer.AsSpan(0, length)))
                        throw new BlockTargetException(BlockError.Io, $"log block {BlockIndex.ValueOf(entry)} vanished before it was destaged");
                    await backing.WriteAsync(start << BlockShift, buffer.AsMemory(0, length), fua: false).ConfigureAwait(false);
                }
                else if (deallocate)
                    await backing.TrimAsync(start << BlockShift, (long)run << BlockShift, fua: false).ConfigureAwait(false);
                else
                    await backing.WriteZeroesAsync(start << BlockShift, (long)run << BlockShift, mayDeallocate: false, fastOnly: false, fua: false)
                        .ConfigureAwait(false);
                i = runEnd;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
