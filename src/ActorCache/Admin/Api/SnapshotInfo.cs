namespace ActorCache.Admin.Api;

/// <summary>
/// One restorable point of a volume (<c>actorcache volume history --json</c>): a generation the log
/// still covers or a kept snapshot's, the batch time written in the log (UTC), and the log bytes
/// written after it.
/// </summary>
public sealed record HistoryPoint(long Generation, DateTime Time, long Bytes);

/// <summary>
/// A kept snapshot (<c>actorcache snapshot list --json</c>). The field names are a promise to scripts:
/// fields may be added, never renamed or removed.
/// </summary>
public sealed record SnapshotInfo
{
    public required string Volume { get; init; }
    public required string Name { get; init; }
    public required long Generation { get; init; }
    /// <summary>The batch time of the generation, from the log (UTC).</summary>
    public required DateTime Time { get; init; }
    /// <summary>The NBD export that serves it: <c>VOL@NAME</c>.</summary>
    public required string Export { get; init; }
    /// <summary><c>ok</c>, or <c>expired</c>: given up to stay within cache.snapshot-space; it no longer reads.</summary>
    public required string State { get; init; }
    /// <summary>Bytes of preserved (copy-on-write) blocks only this snapshot reads: what deleting it gives back.</summary>
    public required long ExclusiveBytes { get; init; }
    /// <summary>When the snapshot was created (UTC).</summary>
    public required DateTime Created { get; init; }
    /// <summary>Volumes cloned from it that still read through to it.</summary>
    public required IReadOnlyList<string> Clones { get; init; }
}

/// <summary>A byte range whose content may differ between two points (<c>actorcache snapshot diff --json</c>).</summary>
public sealed record ChangedRangeInfo(long Offset, long Length);
