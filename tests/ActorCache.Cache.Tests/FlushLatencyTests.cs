using System.Diagnostics;

namespace ActorCache.Cache.Tests;

/// <summary>
/// FLUSH latency buckets: a duration lands in the first bucket whose bound it does not exceed (Prometheus' <c>le</c>),
/// the counts come out cumulative, and every FLUSH the cache completes is counted once.
/// </summary>
public sealed class FlushLatencyTests : IDisposable
{
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    private static long Ticks(long micros) => micros * Stopwatch.Frequency / 1_000_000;

    [Fact]
    public void The_bounds_are_log_spaced_from_25_microseconds_to_2_5_seconds()
    {
        Assert.Equal([0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
            LatencyHistogram.UpperBoundsSeconds);
    }

    [Fact]
    public void A_duration_counts_in_the_first_bucket_it_does_not_exceed_and_the_counts_are_cumulative()
    {
        var histogram = new LatencyHistogram();
        histogram.Count(0);
        histogram.Count(Ticks(25)); // on the bound: in it
        histogram.Count(Ticks(25) + 1); // just past it: the next
        histogram.Count(Ticks(3_000));
        histogram.Count(Ticks(2_500_000));
        histogram.Count(Ticks(60_000_000)); // past every bound: +Inf only

        var counts = histogram.Cumulative();
        Assert.Equal(LatencyHistogram.UpperBoundsSeconds.Count + 1, counts.Length);
        Assert.Equal(2, counts[0]); // <= 25 us
        Assert.Equal(3, counts[1]); // <= 50 us
        Assert.Equal(3, counts[6]); // <= 2.5 ms
        Assert.Equal(4, counts[7]); // <= 5 ms
        Assert.Equal(4, counts[14]); // <= 1 s
        Assert.Equal(5, counts[15]); // <= 2.5 s
        Assert.Equal(6, counts[16]); // +Inf
    }

    [Fact]
    public async Task Every_completed_flush_is_counted_in_the_buckets()
    {
        await using var cache = _fixture.Open(4 << 20, _fixture.Options());
        for (var i = 0; i < 10; i++)
        {
            await CacheFixture.StagedWriteAsync(cache, i * 4096L, CacheFixture.Pattern(4096, i), fua: false);
            await cache.FlushAsync();
        }
        var statistics = cache.Statistics;
        Assert.Equal(10, statistics.CommitTimes.Flushes);
        Assert.Equal(LatencyHistogram.UpperBoundsSeconds.Count + 1, statistics.FlushLatencyBuckets.Count);
        Assert.Equal(10, statistics.FlushLatencyBuckets[^1]);
    }
}
