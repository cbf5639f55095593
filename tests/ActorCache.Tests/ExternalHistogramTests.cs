using ActorCache.Admin;
using ActorCache.Cli;

namespace ActorCache.Tests;

/// <summary>
/// The FLUSH latency histogram the cache counts, as <c>/metrics</c> writes it: one histogram family in the text
/// exposition format (cumulative buckets by <c>le</c>, <c>_sum</c>, <c>_count</c> equal to the +Inf bucket), read back
/// the way <c>top</c> reads it.
/// </summary>
public sealed class ExternalHistogramTests
{
    [Fact]
    public void A_volume_has_its_cumulative_buckets_then_sum_and_count_under_one_histogram_type()
    {
        var histogram = new ExternalHistogram("x_seconds", "What x took.", [0.000025, 0.5, 2.5]);
        histogram.Set("vol1", [0, 0, 0, 0], 0);
        histogram.Set("vol0", [1, 4, 6, 7], 12.25);

        Assert.Equal(
            """
            # HELP x_seconds What x took.
            # TYPE x_seconds histogram
            x_seconds_bucket{volume="vol0",le="0.000025"} 1
            x_seconds_bucket{volume="vol0",le="0.5"} 4
            x_seconds_bucket{volume="vol0",le="2.5"} 6
            x_seconds_bucket{volume="vol0",le="+Inf"} 7
            x_seconds_sum{volume="vol0"} 12.25
            x_seconds_count{volume="vol0"} 7
            x_seconds_bucket{volume="vol1",le="0.000025"} 0
            x_seconds_bucket{volume="vol1",le="0.5"} 0
            x_seconds_bucket{volume="vol1",le="2.5"} 0
            x_seconds_bucket{volume="vol1",le="+Inf"} 0
            x_seconds_sum{volume="vol1"} 0
            x_seconds_count{volume="vol1"} 0

            """.ReplaceLineEndings("\n"), histogram.Text());

        histogram.Remove("vol1");
        Assert.DoesNotContain("vol1", histogram.Text());
    }

    [Fact]
    public void A_volume_name_is_escaped_and_reads_back_with_its_buckets_in_order()
    {
        var histogram = new ExternalHistogram("x_seconds", "h", [0.001, 0.01]);
        const string odd = "a\"b\\c";
        histogram.Set(odd, [2, 3, 5], 1);
        Assert.Contains("x_seconds_bucket{volume=\"a\\\"b\\\\c\",le=\"0.001\"} 2\n", histogram.Text());

        var sample = MetricsSample.Parse(histogram.Text());
        Assert.Equal([new(0.001, 2), new(0.01, 3), new(double.PositiveInfinity, 5)], sample.Buckets("x_seconds_bucket", odd));
        Assert.Equal(5, sample.Volume("x_seconds_count", odd));
    }

    [Fact]
    public void Counts_for_other_buckets_than_the_histograms_are_refused()
    {
        var histogram = new ExternalHistogram("x_seconds", "h", [0.001, 0.01]);
        Assert.Throws<ArgumentException>(() => histogram.Set("vol0", [1, 2], 0));
    }
}
