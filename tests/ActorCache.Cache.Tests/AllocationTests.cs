using ActorCache.Testing;

namespace ActorCache.Cache.Tests;

/// <summary>Writes, reads and commits through the cache allocate nothing per request (the flusher's batches and a FLUSH's or FUA's waiter included).</summary>
[Collection(AllocationCollection.Name)]
public sealed class AllocationTests : IDisposable
{
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Writes_and_reads_allocate_nothing_per_request()
    {
        await using var cache = _fixture.Open(64 << 20, _fixture.Options(segmentSize: 64 << 20, capacity: 1L << 30) with { MaxBatchBlocks = 256 });
        var block = new byte[4096];
        var random = new Random(1);
        async Task Round(int count)
        {
            for (var i = 0; i < count; i++)
            {
                var offset = random.Next(0, 16384) * 4096L;
                await cache.WriteAsync(offset, block, fua: false);
                await cache.ReadAsync(offset, block);
                // A FLUSH now and then, as file systems send them, keeps the ring from filling: a full ring is
                // backpressure (a slow path that may allocate), not the hot path measured here.
                if (i % 256 == 255) await cache.FlushAsync();
            }
        }
        // The listener first: setting it up (the runtime's event source, reflection) allocates, and not per request.
        using var listener = new AllocListener();
        await Round(20_000); // warm up
        // The count is process-wide, so one-off work elsewhere (the actor system finishing its start,
        // tiered JIT) can land in a window; an allocation per request shows in every window.
        const int requests = 50_000;
        var perRequest = double.MaxValue;
        for (var window = 0; window < 3; window++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            await Round(requests);
            perRequest = Math.Min(perRequest, (double)(GC.GetTotalAllocatedBytes(precise: true) - before) / (2 * requests));
        }
        Assert.True(perRequest < 8, $"{perRequest:F1} bytes allocated per request ({cache.Statistics.BatchesWritten} batches): {listener.Top(8)}");
    }

    /// <summary>
    /// The database pattern (J9, J10): one writer at queue depth 1, each write followed by a FLUSH, or written
    /// with FUA. Every second request waits for the log's fdatasync, so a waiter object per commit would be an
    /// allocation per request.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_commit_at_queue_depth_one_allocates_nothing(bool fua)
    {
        await using var cache = _fixture.Open(64 << 20, _fixture.Options(segmentSize: 64 << 20, capacity: 1L << 30));
        var block = new byte[4096];
        var random = new Random(1);
        async Task Round(int count)
        {
            for (var i = 0; i < count; i++)
            {
                var offset = random.Next(0, 1024) * 4096L; // few blocks: the index is full grown after the warm-up
                await cache.WriteAsync(offset, block, fua);
                if (!fua) await cache.FlushAsync();
            }
        }
        using var listener = new AllocListener();
        // Each commit closes a generation, and the history keeps its sync point (32 bytes, kept, not garbage) in a
        // list that doubles. 4,500 warm-up commits grow it to 8,192 points, room for the 3,000 the windows add, so
        // only what a commit leaves behind as garbage is counted.
        await Round(4_500);
        const int commits = 1_000;
        var perCommit = double.MaxValue;
        for (var window = 0; window < 3 && perCommit >= 8; window++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            await Round(commits);
            var elapsed = watch.Elapsed;
            var during = GC.GetTotalAllocatedBytes(precise: true) - before;
            // What the cache's timers allocate in the same time without commits (its tick, a wait's timer): on a slow disk a
            // window lasts seconds and they add up past 8 bytes a commit, though no commit allocates.
            before = GC.GetTotalAllocatedBytes(precise: true);
            await Task.Delay(elapsed);
            var idle = GC.GetTotalAllocatedBytes(precise: true) - before;
            perCommit = Math.Min(perCommit, (double)(during - idle) / commits);
        }
        Assert.True(perCommit < 8, $"{perCommit:F1} bytes allocated per {(fua ? "FUA write" : "write and FLUSH")}: {listener.Top(8)}");
    }
}

/// <summary>Allocation is measured process-wide, so these tests run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation";
}
