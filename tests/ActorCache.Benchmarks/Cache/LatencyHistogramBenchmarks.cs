using System.Diagnostics;
using ActorCache.Cache;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Cache;

/// <summary>Counting a FLUSH's time into the latency buckets: every FLUSH the cache completes does it once.</summary>
[MemoryDiagnoser]
public class LatencyHistogramBenchmarks
{
    private readonly LatencyHistogram _histogram = new();

    // From below the first bound to past the last: the short scan for a bucket at its shortest and longest.
    private readonly long[] _durations = [.. new[] { 10L, 180, 2_300, 40_000, 9_000_000 }.Select(us => us * Stopwatch.Frequency / 1_000_000)];

    [Benchmark]
    public void CountFiveDurations()
    {
        foreach (var ticks in _durations) _histogram.Count(ticks);
    }
}
