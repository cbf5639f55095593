namespace ActorCache.Cache.Tests;

/// <summary>
/// Writes below a batch's worth (256 KiB) wait in the ring for the FLUSH or FUA that wants them, or for
/// the flusher's tick: at queue depth 1 a write and its FLUSH are then one log write carrying the
/// sync-point flag and one fdatasync, with no sync-point record. Larger amounts go to the log at once.
/// </summary>
public sealed class CommitBatchingTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task A_write_and_its_flush_at_queue_depth_one_are_one_log_write_and_one_fdatasync()
    {
        // No tick during the test: only writers and FLUSHes move the flusher.
        await using var cache = _fixture.Open(Size, _fixture.Options() with { FlusherTick = TimeSpan.FromMinutes(5) });
        var before = cache.Statistics;
        for (var i = 0; i < 20; i++)
        {
            await CacheFixture.StagedWriteAsync(cache, i * 4096L, CacheFixture.Pattern(4096, i), fua: false);
            await Task.Delay(5); // a client's round trip: time enough for an eager flusher to log the write on its own
            await cache.FlushAsync();
        }
        var after = cache.Statistics;
        Assert.Equal(0, after.SyncPointRecords - before.SyncPointRecords);
        Assert.Equal(20, after.BatchesWritten - before.BatchesWritten);
        Assert.Equal(20, after.Syncs - before.Syncs);
        Assert.Equal(before.Generation + 20, after.Generation);
    }

    [Fact]
    public async Task A_lone_write_reaches_the_log_at_the_flushers_tick()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options() with { FlusherTick = TimeSpan.FromMilliseconds(50) });
        var before = cache.Statistics.BatchesWritten;
        await CacheFixture.StagedWriteAsync(cache, 0, CacheFixture.Pattern(4096, 1), fua: false);
        for (var i = 0; i < 200 && cache.Statistics.BatchesWritten == before; i++) await Task.Delay(25);
        Assert.True(cache.Statistics.BatchesWritten > before, "the write never reached the log");
    }

    [Fact]
    public async Task A_batchs_worth_of_writes_reaches_the_log_without_waiting_for_a_flush_or_the_tick()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options() with { FlusherTick = TimeSpan.FromMinutes(5) });
        var before = cache.Statistics.BatchesWritten;
        for (var i = 0; i < 64; i++) await CacheFixture.StagedWriteAsync(cache, i * 4096L, CacheFixture.Pattern(4096, i), fua: false);
        for (var i = 0; i < 200 && cache.Statistics.BatchesWritten == before; i++) await Task.Delay(25);
        Assert.True(cache.Statistics.BatchesWritten > before, "256 KiB of writes stayed in the ring");
    }
}
