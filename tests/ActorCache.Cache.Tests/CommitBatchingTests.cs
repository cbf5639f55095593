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

    /// <summary>Each log write takes 2 ms (a slow disk); records which writes carried a sync point and when the fdatasyncs came.</summary>
    private sealed class SlowMedium(ILogMedium inner) : WrappedMedium(inner)
    {
        private readonly List<bool> _events = []; // true: an fdatasync; false: a batch write (SyncPoints holds which ones carried a sync point)
        private readonly HashSet<int> _syncPoints = [];

        public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
        {
            Thread.Sleep(2);
            base.Write(address, buffers);
            var flags = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(buffers[0].Span[10..]);
            lock (_events)
            {
                if ((flags & LogFormat.SyncPointFlag) != 0) _syncPoints.Add(_events.Count);
                _events.Add(false);
            }
        }

        public override void Sync()
        {
            base.Sync();
            lock (_events) _events.Add(true);
        }

        /// <summary>For each sync point written, how many batches were written after it before the next fdatasync.</summary>
        public List<int> BatchesBeforeTheirSync()
        {
            lock (_events)
                return [.. _syncPoints.Order().Select(at => _events.Skip(at + 1).TakeWhile(sync => !sync).Count())];
        }
    }

    [Fact]
    public async Task A_flush_under_a_stream_of_writes_is_synced_without_waiting_for_the_queue_to_run_dry()
    {
        // Four writers keep the queue from ever running dry. The flusher wrote batch after batch and synced only when the
        // queue was empty or the log full: a FLUSH waited seconds (a 1 GiB log: up to 9 s), and no periodic commit ran.
        var options = _fixture.Options(capacity: 1L << 30);
        var medium = new SlowMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        await using var cache = _fixture.Open(Size, options, medium: medium);
        using var stop = new CancellationTokenSource();
        var data = CacheFixture.Pattern(4096, 7);
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (var i = w; !stop.IsCancellationRequested; i += 4) await cache.WriteAsync(i % 1000 * 4096L, data, fua: false);
        })).ToArray();
        await Task.Delay(300);
        for (var k = 0; k < 5; k++) await cache.FlushAsync();
        await stop.CancelAsync();
        await Task.WhenAll(writers);
        var gaps = medium.BatchesBeforeTheirSync();
        Assert.NotEmpty(gaps);
        // Synced within the flusher's write run (2-20 ms): ten 2 ms batch writes later at most (thousands before).
        Assert.True(gaps.Max() <= 16, $"batches written between a sync point and its fdatasync: {string.Join(", ", gaps)}");
    }
}
