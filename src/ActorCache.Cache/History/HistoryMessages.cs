using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Which sync point a request means: the one that closed a generation, the newest at or before a time
/// (batch time), the newest of all, or one known exactly (a kept snapshot's, which may be older than
/// the log by now).
/// </summary>
public sealed record PointQuery
{
    public long? Generation { get; init; }
    public DateTimeOffset? Time { get; init; }
    public SyncPoint? Exact { get; init; }
    public bool Latest { get; init; }

    public static PointQuery AtGeneration(long generation) => new() { Generation = generation };
    public static PointQuery AtTime(DateTimeOffset time) => new() { Time = time };
    public static PointQuery Known(SyncPoint point) => new() { Exact = point };
    public static readonly PointQuery Newest = new() { Latest = true };

    public override string ToString() =>
        Exact is { } p ? $"generation {p.Generation}" : Generation is { } g ? $"generation {g}" : Time is { } t ? $"{t:yyyy-MM-ddTHH:mm:ss.fffZ}" : "now";
}

/// <summary>One restorable point as history lists it: its generation, its time, and how many log bytes were written since.</summary>
public sealed record HistoryEntry(long Generation, DateTimeOffset Time, long BytesSince, SyncPoint Point);

/// <summary>Asks a volume's stack for its restorable history, oldest first (answered by the cache; empty without one).</summary>
public sealed record ReadHistory : TargetMessage
{
    public IReadOnlyList<HistoryEntry>? Result { get; set; }
}

/// <summary>Opens a read-only view of the volume at a point (answered by the cache: <see cref="Result"/>).</summary>
public sealed record OpenPastView(PointQuery Query) : TargetMessage
{
    public GenerationView? Result { get; set; }
}

/// <summary>Resolves a point and keeps it restorable from now on, whatever the destager does (a kept snapshot).</summary>
public sealed record KeepPoint(PointQuery Query) : TargetMessage
{
    public SyncPoint? Result { get; set; }
}

/// <summary>Lets a kept point go (its snapshot was deleted).</summary>
public sealed record ReleasePoint(long Sequence) : TargetMessage;

/// <summary>
/// Holds new writes back until <see cref="ResumeWrites"/> (writes already acknowledged stay): the barrier
/// of a snapshot across several volumes. Whoever pauses must resume, also when it fails.
/// </summary>
public sealed record PauseWrites : TargetMessage;

public sealed record ResumeWrites : TargetMessage;

/// <summary>A byte range whose content may differ between two points of a volume.</summary>
public readonly record struct ChangedRange(long Offset, long Length);

/// <summary>
/// The byte ranges whose content may differ between two points (<see cref="To"/> null: the live volume),
/// from the log and the snapshot store, without reading every block; offset order, no false negatives.
/// </summary>
public sealed record DiffPoints(PointQuery From, PointQuery? To) : TargetMessage
{
    public IReadOnlyList<ChangedRange>? Result { get; set; }
}

/// <summary>Bytes of preserved copies only one protected point reads, by the point's batch sequence (see <see cref="SnapshotStore.ExclusiveBytes"/>).</summary>
public sealed record ReadExclusiveBytes : TargetMessage
{
    public IReadOnlyDictionary<long, long>? Result { get; set; }
}
