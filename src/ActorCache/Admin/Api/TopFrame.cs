namespace ActorCache.Admin.Api;

/// <summary>
/// One frame of <c>actorcache top</c> (<c>top --once --json</c> prints it): rates from two scrapes of the node's
/// <c>/metrics</c> <see cref="IntervalSeconds"/> apart. The field names are a promise to scripts (documented in
/// the README): fields may be added, never renamed or removed.
/// </summary>
public sealed record TopFrame
{
    /// <summary>When the second scrape came back, ISO-8601 UTC.</summary>
    public required DateTimeOffset Time { get; init; }
    /// <summary>Seconds between the two scrapes the rates are computed from.</summary>
    public required double IntervalSeconds { get; init; }
    /// <summary>Free and total slots of the node's RAM ring.</summary>
    public required long RingFreeSlots { get; init; }
    public required long RingSlots { get; init; }
    public required IReadOnlyList<VolumeRates> Volumes { get; init; }
}

/// <summary>One volume in a <see cref="TopFrame"/>. Cache fields are null for a volume without a cache (pass-through, read-only).</summary>
public sealed record VolumeRates
{
    public required string Volume { get; init; }
    public required bool Online { get; init; }
    /// <summary><c>write-back</c>, <c>write-through</c>, <c>pass-through</c>.</summary>
    public required string? Mode { get; init; }
    /// <summary>Read and write requests per second over the interval.</summary>
    public required double ReadIops { get; init; }
    public required double WriteIops { get; init; }
    /// <summary>MiB per second those requests carried.</summary>
    public required double ReadMiBps { get; init; }
    public required double WriteMiBps { get; init; }
    /// <summary>Totals since the node started (the counters the rates come from).</summary>
    public required long Reads { get; init; }
    public required long Writes { get; init; }
    public required long ReadBytes { get; init; }
    public required long WrittenBytes { get; init; }
    /// <summary>FLUSH requests per second the cache completed over the interval.</summary>
    public required double? FlushesPerSecond { get; init; }
    /// <summary>Mean FLUSH time in the cache over the interval, milliseconds; null when none completed in it.</summary>
    public required double? FlushLatencyMs { get; init; }
    /// <summary>Mean FLUSH time since the node started, milliseconds; null before the first.</summary>
    public required double? FlushLatencyMsSinceStart { get; init; }
    /// <summary>
    /// Median and 99th percentile of FLUSH time in the cache over the interval, milliseconds, estimated from the latency
    /// buckets as Prometheus' histogram_quantile does; null when none completed in it.
    /// </summary>
    public required double? FlushLatencyP50Ms { get; init; }
    public required double? FlushLatencyP99Ms { get; init; }
    /// <summary>Log bytes not yet destaged to the backing (the dirty data in the log).</summary>
    public required long? DirtyBytes { get; init; }
    /// <summary>Bytes the log may use.</summary>
    public required long? LogCapacityBytes { get; init; }
    /// <summary>Bytes whose newest version is in the ring or the log, not yet on the backing.</summary>
    public required long? CachedBytes { get; init; }
    /// <summary>MiB per second copied from the log to the backing over the interval.</summary>
    public required double? DestageMiBps { get; init; }
    /// <summary>The log's open generation.</summary>
    public required long? Generation { get; init; }
    /// <summary>The oldest point the volume can be brought back to without a snapshot, ISO-8601 UTC; null when there is none.</summary>
    public required DateTimeOffset? OldestRestorable { get; init; }
}
