using ActorCache.Cli;

namespace ActorCache.Tests;

/// <summary>
/// FLUSH latency quantiles in <c>actorcache top</c>: estimated from the histogram's bucket deltas between two scrapes
/// the way Prometheus' <c>histogram_quantile</c> does, and absent when no FLUSH completed in the interval.
/// </summary>
public sealed class LatencyQuantilesTests
{
    private static readonly HistogramBucket[] Counted = [new(1, 10), new(2, 30), new(4, 90), new(double.PositiveInfinity, 100)];

    [Theory]
    [InlineData(0.05, 0.5)] // rank 5 of the 10 at most 1: halfway from 0 to 1
    [InlineData(0.1, 1.0)]
    [InlineData(0.5, 2 + 2 * (20.0 / 60))] // rank 50 is the 20th of the 60 between 2 and 4
    [InlineData(0.9, 4.0)]
    [InlineData(0.99, 4.0)] // in the +Inf bucket: the highest finite bound, as histogram_quantile says
    public void A_quantile_is_interpolated_inside_the_bucket_its_rank_falls_in(double q, double expected)
    {
        Assert.Equal(expected, LatencyQuantiles.Quantile(q, Counted)!.Value, precision: 9);
    }

    [Fact]
    public void Buckets_that_counted_nothing_or_lack_the_inf_bucket_have_no_quantile()
    {
        Assert.Null(LatencyQuantiles.Quantile(0.5, []));
        Assert.Null(LatencyQuantiles.Quantile(0.5, [new(1, 0), new(double.PositiveInfinity, 0)]));
        Assert.Null(LatencyQuantiles.Quantile(0.5, [new(1, 3), new(2, 5)]));
    }

    [Fact]
    public void The_interval_counts_are_the_differences_and_a_histogram_that_started_again_counts_from_zero()
    {
        HistogramBucket[] before = [new(1, 5), new(2, 7), new(double.PositiveInfinity, 8)];
        HistogramBucket[] after = [new(1, 6), new(2, 17), new(double.PositiveInfinity, 20)];
        Assert.Equal([new(1, 1), new(2, 10), new(double.PositiveInfinity, 12)], LatencyQuantiles.Between(before, after));
        HistogramBucket[] restarted = [new(1, 2), new(2, 3), new(double.PositiveInfinity, 3)];
        Assert.Equal(restarted, LatencyQuantiles.Between(after, restarted));
    }

    [Fact]
    public void Top_takes_flush_p50_and_p99_from_the_bucket_deltas_of_two_scrapes()
    {
        // The FLUSHes before the first scrape were slow; the 100 in the interval took 0.1 to 0.25 ms (90) and 1 to 2.5 ms (10).
        var before = MetricsSample.Parse(Exposition(("0.0001", 0), ("0.00025", 0), ("0.001", 0), ("0.0025", 0), ("1", 0), ("+Inf", 50)));
        var after = MetricsSample.Parse(Exposition(("0.0001", 0), ("0.00025", 90), ("0.001", 90), ("0.0025", 100), ("1", 100), ("+Inf", 150)));

        var vol0 = Assert.Single(TopCommand.Compute(before, after).Volumes);
        Assert.Equal(0.1 + 0.15 * (50.0 / 90), vol0.FlushLatencyP50Ms!.Value, precision: 9);
        Assert.Equal(1 + 1.5 * (9.0 / 10), vol0.FlushLatencyP99Ms!.Value, precision: 9);

        // No FLUSH between two scrapes: no latency to show, however many came before.
        var idle = Assert.Single(TopCommand.Compute(after, after).Volumes);
        Assert.Null(idle.FlushLatencyP50Ms);
        Assert.Null(idle.FlushLatencyP99Ms);
    }

    /// <summary>A node's /metrics with one volume and its FLUSH latency buckets, in the order given (not sorted).</summary>
    private static string Exposition(params (string Le, long Count)[] buckets) =>
        "# TYPE actorcache_volume_online gauge\nactorcache_volume_online{volume=\"vol0\"} 1\n" +
        "# TYPE actorcache_cache_flush_latency_seconds_bucket counter\n" +
        string.Concat(Enumerable.Reverse(buckets).Select(b => $"actorcache_cache_flush_latency_seconds_bucket{{volume=\"vol0\",le=\"{b.Le}\"}} {b.Count}\n"));
}
