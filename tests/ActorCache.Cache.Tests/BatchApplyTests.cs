using System.Collections.Concurrent;
using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// A secondary applies its primary's batches as one request each (<see cref="WriteBackCache.TryApplyBatchAsync"/>, or
/// with the data received into staged ring slots, <see cref="WriteBackCache.TryStageBatchAsync"/> and
/// <see cref="WriteBackCache.CommitStagedBatchAsync"/>): the blocks read back, trims and zeroes included; the batch lands
/// in one batch of this log even where the writes queued before it fill most of one; it survives a reopen; bad entries
/// change nothing, and staged slots always go back to the ring.
/// </summary>
public sealed class BatchApplyTests : IDisposable
{
    private const long Size = 2 << 20;
    private const int Block = LogFormat.BlockSize;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    // Blocks 40-41 and 100-102 get data, 3-6 are trimmed, 10-11 zeroed: data in entry order, as in a log record.
    private static readonly LogEntry[] Entries =
    [
        new(40, 2, LogEntryType.Data, 0),
        new(3, 4, LogEntryType.Trim, 0),
        new(100, 3, LogEntryType.Data, 0),
        new(10, 2, LogEntryType.Zero, 0),
    ];

    private static void ApplyToModel(byte[] model, byte[] data)
    {
        data.AsSpan(0, 2 * Block).CopyTo(model.AsSpan(40 * Block));
        Array.Clear(model, 3 * Block, 4 * Block);
        data.AsSpan(2 * Block, 3 * Block).CopyTo(model.AsSpan(100 * Block));
        Array.Clear(model, 10 * Block, 2 * Block);
    }

    private static async Task AssertContentAsync(IBlockTarget cache, byte[] model)
    {
        var content = new byte[Size];
        await cache.ReadAsync(0, content);
        Assert.True(model.AsSpan().SequenceEqual(content), "the volume differs from what was written and applied");
    }

    private readonly RingBuffer _ring = new(64L << 20); // private, so free-slot counts are exact

    /// <summary>Applies the batch as a secondary does: staged (its data copied into the slots, as the receiver's socket fills them) or from a buffer.</summary>
    private static async Task<bool> ApplyAsync(WriteBackCache cache, LogEntry[] entries, byte[] data, bool staged)
    {
        if (!staged) return await cache.TryApplyBatchAsync(entries, data);
        var write = new StagedWrite();
        Assert.True(await cache.TryStageBatchAsync(data.Length / Block, write));
        Fill(write, data);
        return await cache.CommitStagedBatchAsync(entries, write);
    }

    private static void Fill(StagedWrite write, byte[] data)
    {
        var at = 0;
        foreach (var segment in write.Segments)
        {
            data.AsMemory(at, segment.Length).CopyTo(segment);
            at += segment.Length;
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_applied_batch_reads_back_lands_in_one_log_batch_and_survives_a_reopen(bool staged)
    {
        var model = CacheFixture.Pattern((int)Size, 1);
        var data = CacheFixture.Pattern(5 * Block, 2);
        var published = new ConcurrentQueue<LogEntry[]>();
        await using (var cache = _fixture.Open(Size, ring: _ring))
        {
            await cache.WriteAsync(0, model, fua: true);
            using (cache.SubscribeBatches(new Recorder(published)))
            {
                // 60 blocks queued first (the fixture's batches hold 64 data blocks): the applied batch's first entry
                // would fit beside them, the second data entry not. It must wait for the next batch whole.
                var before = CacheFixture.Pattern(60 * Block, 3);
                await cache.WriteAsync(200 * Block, before, fua: false);
                before.CopyTo(model, 200 * Block);
                Assert.True(await ApplyAsync(cache, Entries, data, staged));
                ApplyToModel(model, data);
                await AssertContentAsync(cache, model);
                await cache.FlushAsync();
            }
            await AssertContentAsync(cache, model);
        }
        var holding = published.Where(entries => entries.Any(e => e.Block is 40 or 3 or 100 or 10)).ToList();
        var batch = Assert.Single(holding);
        Assert.Equal(Entries.Select(e => (e.Block, e.BlockCount, e.Type)), batch.Where(e => e.Block < 200).Select(e => (e.Block, e.BlockCount, e.Type)));
        await using (var reopened = _fixture.Open(Size))
            await AssertContentAsync(reopened, model);
    }

    [Fact]
    public async Task Entries_that_do_not_match_their_data_or_the_volume_are_refused_and_change_nothing()
    {
        var model = CacheFixture.Pattern((int)Size, 4);
        await using var cache = _fixture.Open(Size);
        await cache.WriteAsync(0, model, fua: false);
        await Assert.ThrowsAsync<ArgumentException>(async () => await cache.TryApplyBatchAsync(Entries, new byte[4 * Block]));
        LogEntry[] beyond = [new(10, 1, LogEntryType.Data, 0), new(Size / Block - 1, 2, LogEntryType.Trim, 0)];
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await cache.TryApplyBatchAsync(beyond, new byte[Block]));
        LogEntry[] overflowing = [new(10, 1, LogEntryType.Data, 0), new(long.MaxValue - 1, 2, LogEntryType.Trim, 0)]; // block + count wraps
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await cache.TryApplyBatchAsync(overflowing, new byte[Block]));
        LogEntry[] empty = [new(10, 0, LogEntryType.Zero, 0)];
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await cache.TryApplyBatchAsync(empty, Array.Empty<byte>()));
        await AssertContentAsync(cache, model);
    }

    [Fact]
    public async Task Staged_entries_that_do_not_match_their_data_or_the_volume_are_refused_change_nothing_and_give_their_slots_back()
    {
        var model = CacheFixture.Pattern((int)Size, 7);
        await using var cache = _fixture.Open(Size, ring: _ring);
        await cache.WriteAsync(0, model, fua: false);
        await cache.FlushAsync();
        await WaitRingFreeAsync();
        var write = new StagedWrite();
        Assert.True(await cache.TryStageBatchAsync(4, write)); // the entries carry 5 data blocks
        Fill(write, CacheFixture.Pattern(4 * Block, 8));
        Assert.Equal(_ring.SlotCount - 4, _ring.FreeSlots);
        await Assert.ThrowsAsync<ArgumentException>(async () => await cache.CommitStagedBatchAsync(Entries, write));
        Assert.Null(write.StagedBy);
        Assert.True(await cache.TryStageBatchAsync(1, write));
        LogEntry[] beyond = [new(10, 1, LogEntryType.Data, 0), new(Size / Block - 1, 2, LogEntryType.Trim, 0)];
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await cache.CommitStagedBatchAsync(beyond, write));
        Assert.Null(write.StagedBy);
        Assert.Equal(_ring.SlotCount, _ring.FreeSlots);
        await AssertContentAsync(cache, model);
    }

    [Fact]
    public async Task A_cache_that_leaves_write_back_while_a_batch_is_staged_declines_it_and_the_slots_stay_for_the_caller()
    {
        var model = CacheFixture.Pattern((int)Size, 9);
        await using var cache = _fixture.Open(Size, ring: _ring);
        await cache.WriteAsync(0, model, fua: false);
        var write = new StagedWrite();
        Assert.True(await cache.TryStageBatchAsync(5, write));
        Fill(write, CacheFixture.Pattern(5 * Block, 10));
        await cache.SetModeAsync(CacheMode.WriteThrough);
        Assert.False(await cache.CommitStagedBatchAsync(Entries, write));
        Assert.Same(cache, write.StagedBy); // the caller copies the data out, then gives the slots back
        cache.AbandonStagedWrite(write);
        await WaitRingFreeAsync();
        await AssertContentAsync(cache, model);
        Assert.False(await cache.TryStageBatchAsync(5, write)); // and nothing more is staged
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_batch_applied_while_writes_are_paused_waits_and_lands_whole_after_resume(bool staged)
    {
        // A snapshot's barrier across volumes pauses a secondary's cache too: a batch received meanwhile waits, its slots held.
        var model = CacheFixture.Pattern((int)Size, 11);
        await using var cache = _fixture.Open(Size, ring: _ring);
        await cache.WriteAsync(0, model, fua: false);
        Assert.True(await cache.TrySendAsync(new PauseWrites()));
        var data = CacheFixture.Pattern(5 * Block, 12);
        var applying = ApplyAsync(cache, Entries, data, staged);
        await Task.Delay(300);
        Assert.False(applying.IsCompleted, "a batch was applied while writes were paused");
        await AssertContentAsync(cache, model);

        Assert.True(await cache.TrySendAsync(new ResumeWrites()));
        Assert.True(await applying.WaitAsync(TimeSpan.FromSeconds(10)));
        ApplyToModel(model, data);
        await AssertContentAsync(cache, model);
        await cache.FlushAsync();
        await WaitRingFreeAsync();
    }

    /// <summary>Slots of logged writes go back once the flusher is done with them: wait for every one.</summary>
    private async Task WaitRingFreeAsync()
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (_ring.FreeSlots != _ring.SlotCount)
        {
            Assert.True(DateTime.UtcNow < until, $"{_ring.SlotCount - _ring.FreeSlots} ring slots were not given back");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task A_cache_not_in_write_back_declines_and_applies_nothing()
    {
        var model = CacheFixture.Pattern((int)Size, 5);
        await using var cache = _fixture.Open(Size, mode: CacheMode.WriteThrough);
        await cache.WriteAsync(0, model, fua: false);
        Assert.False(await cache.TryApplyBatchAsync(Entries, CacheFixture.Pattern(5 * Block, 6)));
        await AssertContentAsync(cache, model);
    }

    private sealed class Recorder(ConcurrentQueue<LogEntry[]> published) : ILogSubscriber
    {
        public void OnBatch(LoggedBatch batch)
        {
            published.Enqueue(batch.Entries.ToArray());
            batch.Release();
        }
    }
}
