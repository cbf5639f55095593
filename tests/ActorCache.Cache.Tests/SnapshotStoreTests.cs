using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// The snapshot store's lookups rely on each block's copies being in ascending <c>until</c> order: a point reads
/// a block's first copy past it. Compaction and loading must keep that order whatever order the file has.
/// </summary>
public sealed class SnapshotStoreTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "snapshot-store-" + Guid.NewGuid().ToString("N"));
    private readonly Guid _volumeId = Guid.NewGuid();

    public SnapshotStoreTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Fill(byte value) => Enumerable.Repeat(value, 4096).ToArray();

    private static byte FirstByteAt(SnapshotStore store, long block, long sequence)
    {
        Assert.True(store.TryFind(block, sequence, out var copy), $"block {block} has a copy for the point at {sequence}");
        var buffer = new byte[4096];
        SnapshotStore.Read(copy, block, buffer);
        return buffer[0];
    }

    [Fact]
    public void Compaction_keeps_each_blocks_copies_in_until_order()
    {
        using var store = SnapshotStore.Open(new LogDirectory(_dir), _volumeId, 0);
        // Points kept at batches 3 and 7. The step ending at batch 5 preserved block 2 for the point at 3; the step ending
        // at batch 10 preserved blocks 1 and 2 for the point at 7. Block 1 comes first when the store is walked, so a
        // compaction grouping by until in the order it meets them writes until 10 before until 5.
        store.Append([2L], 5, Fill(0xA5));
        store.Append([1L, 2L], 10, [.. Fill(0x11), .. Fill(0xB7)]);
        var points = new ProtectedPoints([3L, 7L]);

        store.Compact(points, _ => { });

        Assert.Equal(0xA5, FirstByteAt(store, 2, 3)); // block 2 as it was at the point at 3, not at 7
        Assert.Equal(0xB7, FirstByteAt(store, 2, 7));
        Assert.Equal(10, store.NewestUntil(2));
    }

    [Fact]
    public void A_file_with_batches_out_of_until_order_is_read_in_order()
    {
        var directory = new LogDirectory(_dir);
        long length;
        using (var store = SnapshotStore.Open(directory, _volumeId, 0))
        {
            // What a compaction before the fix above could leave in the file: the later until first.
            store.Append([2L], 10, Fill(0xB7));
            store.Append([2L], 5, Fill(0xA5));
            store.Sync();
            length = store.Length;
        }
        using var reopened = SnapshotStore.Open(directory, _volumeId, length);
        Assert.Equal(0xA5, FirstByteAt(reopened, 2, 3));
        Assert.Equal(0xB7, FirstByteAt(reopened, 2, 7));
        Assert.Equal(10, reopened.NewestUntil(2));
    }
}
