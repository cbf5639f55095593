using System.Diagnostics;

namespace ActorCache.Cache;

/// <summary>
/// Durations counted into fixed log-spaced buckets, 25 µs to 2.5 s and then +Inf, so quantiles can be
/// estimated from the counts (Prometheus' <c>histogram_quantile</c>, <c>actorcache top</c>). Counting is
/// on the FLUSH path: a short scan of tick bounds and one interlocked increment into counts allocated once.
/// </summary>
public sealed class LatencyHistogram
{
    // Microseconds, so the bounds convert to Stopwatch ticks exactly: a duration equal to a bound counts in its bucket (le).
    private static readonly long[] BoundMicros =
        [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];

    private static readonly long[] BoundTicks = [.. BoundMicros.Select(m => m * Stopwatch.Frequency / 1_000_000)];

    /// <summary>Each bucket's upper bound in seconds, ascending; one bucket more, +Inf, takes everything longer.</summary>
    public static IReadOnlyList<double> UpperBoundsSeconds { get; } = [.. BoundMicros.Select(m => m / 1e6)];

    private readonly long[] _counts = new long[BoundMicros.Length + 1];

    /// <summary>Counts one duration of <paramref name="ticks"/> (<see cref="Stopwatch"/> ticks).</summary>
    public void Count(long ticks)
    {
        var bucket = 0;
        while (bucket < BoundTicks.Length && ticks > BoundTicks[bucket]) bucket++;
        Interlocked.Increment(ref _counts[bucket]);
    }

    /// <summary>
    /// How many durations were at most each bound of <see cref="UpperBoundsSeconds"/>, then all of them (+Inf): the
    /// cumulative counts Prometheus' buckets carry. Read bucket by bucket, so a duration counted meanwhile may be in
    /// or out, but the counts never decrease from one bucket to the next.
    /// </summary>
    public long[] Cumulative()
    {
        var cumulative = new long[_counts.Length];
        long total = 0;
        for (var i = 0; i < _counts.Length; i++) cumulative[i] = total += Interlocked.Read(ref _counts[i]);
        return cumulative;
    }
}
