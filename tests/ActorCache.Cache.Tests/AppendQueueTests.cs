namespace ActorCache.Cache.Tests;

/// <summary>The append queue's batches: a request of several records (a trim with partial ends) is never split between batches while it fits in one.</summary>
public sealed class AppendQueueTests
{
    private static void Queue(AppendQueue queue, long first, int count, LogEntryType type, int slot, bool continues)
    {
        var state = (first, count, type, slot, continues);
        queue.Append(ref state, static (q, ref s) => q.QueueLocked(s.first, s.count, s.type, s.type == LogEntryType.Data ? [s.slot] : [], s.continues));
    }

    [Fact]
    public void A_trim_with_partial_ends_goes_into_one_batch_or_the_next_but_never_half_into_each()
    {
        var queue = new AppendQueue(new BlockIndex(1 << 20), ringSlots: 1024);
        for (var i = 0; i < LogFormat.MaxEntries - 1; i++) Queue(queue, i, 1, LogEntryType.Data, i, continues: false);
        // The request: a partial head block, whole blocks trimmed, a partial tail block.
        Queue(queue, 1000, 1, LogEntryType.Data, 500, continues: false);
        Queue(queue, 1001, 10, LogEntryType.Trim, 0, continues: true);
        Queue(queue, 1011, 1, LogEntryType.Data, 501, continues: true);

        var parts = new BatchPart[LogFormat.MaxEntries];
        var count = queue.PeekBatch(parts, maxDataBlocks: 2048, out var dataBlocks, out var completed);
        Assert.Equal(LogFormat.MaxEntries - 1, count); // the request's head would fit, the rest would not: it waits for the next batch
        Assert.Equal(LogFormat.MaxEntries - 1, dataBlocks);
        Assert.Equal(parts[count - 1].Record.Ticket, completed);

        queue.CompleteBatch(parts.AsSpan(0, count), dataBlock: 10, headerBlock: 9);
        count = queue.PeekBatch(parts, maxDataBlocks: 2048, out dataBlocks, out _);
        Assert.Equal(3, count);
        Assert.Equal([1000L, 1001L, 1011L], parts[..3].Select(p => p.Record.Block));
    }
}
