using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// One generation, exact and persistent (DESIGN §3 "Generations"): every completed FLUSH or FUA closes a
/// generation that the log records, and a crash right after it recovers the same generation number and
/// the same sync points (generation and time), so no generation number is ever handed out twice.
/// </summary>
public sealed class GenerationTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>Opens the log as a crash right now would leave it: a copy of the log directory and the backing, recovered.</summary>
    private WriteBackCache RecoverCopy(CacheOptions options, string name)
    {
        var image = Path.Combine(_fixture.Directory, name);
        Directory.CreateDirectory(image);
        foreach (var file in Directory.GetFiles(options.LogDirectory)) File.Copy(file, Path.Combine(image, Path.GetFileName(file)));
        var backing = Path.Combine(image, "backing.img");
        File.Copy(_fixture.BackingPath, backing);
        return _fixture.Open(Size, options with { LogDirectory = image }, backing: FileBacking.Open(backing, Size, create: false));
    }

    [Fact]
    public async Task A_flush_that_arrives_after_its_writes_were_batched_closes_a_generation_that_recovery_finds()
    {
        var options = _fixture.Options();
        var medium = GatedMedium.Over(options);
        await using var cache = _fixture.Open(Size, options, medium: medium);
        Assert.Equal(1, cache.Generation);

        medium.Gated = true;
        await cache.WriteAsync(0, CacheFixture.Pattern(8192, 1), fua: false);
        Assert.True(await medium.Entered.WaitAsync(TimeSpan.FromSeconds(10)), "the flusher never wrote the batch");
        // The batch is being written without any FLUSH waiting: it is not a sync point. Now the FLUSH comes.
        await medium.FlushThenOpenAsync(cache);

        Assert.Equal(2, cache.Generation);
        Assert.Equal(1, cache.Statistics.SyncPointRecords);
        var runtime = cache.History.ToList();
        Assert.Equal([1L], runtime.Select(p => p.Generation));

        await using var recovered = RecoverCopy(options, "after-flush");
        Assert.Equal(cache.Generation, recovered.Generation);
        Assert.Equal(runtime, recovered.History.ToList());
    }

    [Fact]
    public async Task Twenty_write_then_flush_rounds_with_a_pause_recover_the_same_generation_and_sync_points()
    {
        // The case found by hand: write, pause (the flusher batches the write alone), FLUSH; twenty times.
        var options = _fixture.Options();
        await using var cache = _fixture.Open(Size, options);
        for (var round = 0; round < 20; round++)
        {
            await cache.WriteAsync(round * 4096L, CacheFixture.Pattern(4096, round), fua: false);
            await Task.Delay(30);
            if (round % 5 == 4) await cache.WriteAsync(round * 4096L, CacheFixture.Pattern(4096, 100 + round), fua: true); // FUA closes one too
            else await cache.FlushAsync();
        }
        Assert.Equal(21, cache.Generation);
        var runtime = cache.History.ToList();
        Assert.Equal(Enumerable.Range(1, 20).Select(g => (long)g), runtime.Select(p => p.Generation));
        Assert.True(runtime.Zip(runtime.Skip(1)).All(p => p.First.TimeMicros <= p.Second.TimeMicros), "sync point times go backwards");

        await using var recovered = RecoverCopy(options, "after-rounds");
        Assert.Equal(21, recovered.Generation);
        Assert.Equal(runtime, recovered.History.ToList());

        // The recovered log goes on from there: the next FLUSH closes generation 21, never an old number.
        await recovered.WriteAsync(0, new byte[4096], fua: false);
        await recovered.FlushAsync();
        Assert.Equal(21, recovered.History.Latest!.Value.Generation);
    }

    [Fact]
    public async Task A_flush_after_the_periodic_commit_made_its_writes_durable_waits_for_its_sync_point_record_to_be_durable()
    {
        // The write is made durable by the periodic commit, not by the FLUSH: the FLUSH then needs a
        // sync-point record, and must not complete before that record is fdatasync'ed as well.
        var options = _fixture.Options() with { CommitInterval = TimeSpan.FromMilliseconds(50) };
        var recording = new RecordingMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        await using var cache = _fixture.Open(Size, options, medium: recording);
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 5), fua: false);
        for (var deadline = DateTime.UtcNow.AddSeconds(10); recording.SyncCount == 0; await Task.Delay(20))
            Assert.True(DateTime.UtcNow < deadline, "the periodic commit never ran");
        await cache.FlushAsync();
        Assert.Equal(2, cache.Generation);
        Assert.Equal(1, cache.Statistics.SyncPointRecords);

        // A power cut right now: everything up to the last fdatasync survives, nothing after it.
        var image = Path.Combine(_fixture.Directory, "cut");
        Directory.CreateDirectory(image);
        File.Copy(Path.Combine(options.LogDirectory, Checkpoint.FileName), Path.Combine(image, Checkpoint.FileName));
        using (var target = new SegmentFiles(image, options.SegmentSize)) recording.BuildCrashImage(target, recording.SyncCount, tornSectors: 0);
        var backing = Path.Combine(image, "backing.img");
        File.Copy(_fixture.BackingPath, backing);
        await using var recovered = _fixture.Open(Size, options with { LogDirectory = image }, backing: FileBacking.Open(backing, Size, create: false));
        Assert.Equal(2, recovered.Generation);
        Assert.Equal(cache.History.ToList(), recovered.History.ToList());
    }

    [Fact]
    public async Task A_flush_with_nothing_new_closes_nothing_and_completes_at_once()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options());
        await cache.FlushAsync();
        Assert.Equal(1, cache.Generation);
        await cache.WriteAsync(0, new byte[4096], fua: false);
        await cache.FlushAsync();
        await cache.FlushAsync();
        Assert.Equal(2, cache.Generation);
        Assert.Single(cache.History.ToList());
    }
}
