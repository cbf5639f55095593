namespace ActorCache.Replication;

/// <summary>
/// A fixed histogram of acknowledgement latencies (four buckets per power of two of microseconds, up
/// to about 2^31 µs): recording allocates nothing, percentiles are read from the bucket counts.
/// </summary>
internal sealed class AckLatency
{
    private const int BucketsPerOctave = 4, Buckets = 32 * BucketsPerOctave;
    private readonly long[] _counts = new long[Buckets];
    private long _total;

    public void Record(double micros)
    {
        var index = micros <= 1 ? 0 : (int)Math.Min(Buckets - 1, Math.Log2(micros) * BucketsPerOctave);
        Interlocked.Increment(ref _counts[index]);
        Interlocked.Increment(ref _total);
    }

    public void Reset()
    {
        for (var i = 0; i < Buckets; i++) Volatile.Write(ref _counts[i], 0);
        Volatile.Write(ref _total, 0);
    }

    /// <summary>The upper edge of the bucket holding percentile <paramref name="p"/> (0..1), in microseconds; 0 when nothing was recorded.</summary>
    public double Percentile(double p)
    {
        var total = Volatile.Read(ref _total);
        if (total == 0) return 0;
        var rank = (long)Math.Ceiling(total * p);
        var seen = 0L;
        for (var i = 0; i < Buckets; i++)
        {
            seen += Volatile.Read(ref _counts[i]);
            if (seen >= rank) return Math.Pow(2, (i + 1.0) / BucketsPerOctave);
        }
        return Math.Pow(2, (double)Buckets / BucketsPerOctave);
    }
}
