namespace ActorCache.Cli;

/// <summary>One cumulative bucket of a Prometheus histogram: how many observations were at most <see cref="UpperBound"/>.</summary>
public readonly record struct HistogramBucket(double UpperBound, double Count);

/// <summary>
/// Quantiles of a latency histogram over an interval, from the cumulative buckets of two scrapes, estimated as Prometheus'
/// <c>histogram_quantile</c> does: the bucket the rank falls in, and a straight line from its lower to its upper bound.
/// </summary>
public static class LatencyQuantiles
{
    /// <summary>
    /// What was counted between two scrapes, bucket by bucket. Buckets that went down mean the histogram started again in
    /// between (its volume deleted and made again): then what the second scrape has counts from zero.
    /// </summary>
    public static IReadOnlyList<HistogramBucket> Between(IReadOnlyList<HistogramBucket> before, IReadOnlyList<HistogramBucket> after)
    {
        var earlier = before.ToDictionary(b => b.UpperBound, b => b.Count);
        var restarted = after.Any(b => earlier.GetValueOrDefault(b.UpperBound) > b.Count);
        return [.. after.Select(b => restarted ? b : b with { Count = b.Count - earlier.GetValueOrDefault(b.UpperBound) })];
    }

    /// <summary>
    /// The <paramref name="q"/> quantile (0 to 1) of cumulative buckets in ascending order, the last one +Inf; null when they
    /// counted nothing or have no +Inf bucket. A rank in the +Inf bucket is given the highest finite bound; the first bucket
    /// starts at 0. Counts that go down from one bucket to the next (two reads a moment apart) are raised, as Prometheus does.
    /// </summary>
    public static double? Quantile(double q, IReadOnlyList<HistogramBucket> buckets)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(q);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(q, 1);
        if (buckets.Count < 2 || !double.IsPositiveInfinity(buckets[^1].UpperBound)) return null;
        var counts = new double[buckets.Count];
        for (var i = 0; i < counts.Length; i++) counts[i] = Math.Max(buckets[i].Count, i == 0 ? 0 : counts[i - 1]);
        if (counts[^1] <= 0) return null;

        var rank = q * counts[^1];
        var b = 0;
        while (b < counts.Length - 1 && counts[b] < rank) b++;
        if (b == counts.Length - 1) return buckets[^2].UpperBound;
        var start = b == 0 ? Math.Min(0, buckets[0].UpperBound) : buckets[b - 1].UpperBound;
        var below = b == 0 ? 0 : counts[b - 1];
        var inBucket = counts[b] - below;
        return inBucket > 0 ? start + (buckets[b].UpperBound - start) * ((rank - below) / inBucket) : start;
    }
}
