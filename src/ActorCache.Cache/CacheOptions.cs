namespace ActorCache.Cache;

/// <summary>How a volume uses the cache (DESIGN §2).</summary>
public enum CacheMode
{
    /// <summary>Writes are acknowledged from the ring; FLUSH/FUA make them durable in the log.</summary>
    WriteBack,
    /// <summary>A write is acknowledged once it is durable on the backing.</summary>
    WriteThrough,
    /// <summary>No cache: reads and writes go to the backing, FLUSH is fdatasync of the backing.</summary>
    PassThrough,
}

/// <summary>What writers do when the log's file system is full.</summary>
public enum LogFullPolicy
{
    /// <summary>Writers wait (up to the ring wait timeout) until destaging frees log space.</summary>
    Wait,
    /// <summary>New writes and flushes fail with ENOSPC until space returns; acknowledged data is kept.</summary>
    Fail,
}

/// <summary>One volume's cache settings; every default comes from the reference configuration (<see cref="CacheReference"/>).</summary>
public sealed record CacheOptions
{
    /// <summary>The volume's log directory (may be on another disk than the backing).</summary>
    public required string LogDirectory { get; init; }
    public long SegmentSize { get; init; } = CacheReference.Size("segment-size");
    /// <summary>Most bytes the log may occupy; writers wait for destaging when it is full.</summary>
    public long LogCapacity { get; init; } = CacheReference.Size("log-capacity");
    /// <summary>How long history is kept in the log before it is destaged (snapshots can reach back this far).</summary>
    public TimeSpan RetentionTime { get; init; } = CacheReference.Duration("retention-time");
    /// <summary>Share of the log capacity retention may hold; beyond it retention shrinks (with a warning) so writers do not stall.</summary>
    public double RetentionMaxFraction { get; init; } = CacheReference.Double("retention-max-fraction");
    /// <summary>Largest batch the flusher writes at once, in 4 KiB blocks.</summary>
    public int MaxBatchBlocks { get; init; } = (int)(CacheReference.Size("max-batch") >> LogFormat.BlockShift);
    public TimeSpan DestageInterval { get; init; } = CacheReference.Duration("destage-interval");
    public LogFullPolicy LogFullPolicy { get; init; } = CacheReference.Policy("log-full-policy");
    /// <summary>Longest a writer waits for ring space before failing with ENOSPC.</summary>
    public TimeSpan RingWaitTimeout { get; init; } = CacheReference.Duration("ring-wait-timeout");
    /// <summary>How long an extent with nothing cached keeps its index page before it goes.</summary>
    public TimeSpan ExtentIdleTimeout { get; init; } = CacheReference.Duration("extent-idle-timeout");
    /// <summary>Without any FLUSH, the flusher makes the log durable this often (bounds what a crash takes; lets the destager move).</summary>
    public TimeSpan CommitInterval { get; init; } = CacheReference.Duration("commit-interval");
    /// <summary>How often the flusher looks for work without being woken (commits, retries of a full log).</summary>
    public TimeSpan FlusherTick { get; init; } = CacheReference.Duration("flusher-tick");

    /// <summary>The index is persisted once this much log was written since the last save (bounds the replay of an open).</summary>
    public long IndexSaveBytes { get; init; } = CacheReference.Size("index-save-bytes");
    /// <summary>... or this long after the last save, when anything was written since.</summary>
    public TimeSpan IndexSaveInterval { get; init; } = CacheReference.Duration("index-save-interval");
    /// <summary>Below this much history covered by the persisted index, an open replays (and verifies) the whole log instead.</summary>
    public long FullReplayBelow { get; init; } = CacheReference.Size("full-replay-below");

    /// <summary>Most bytes the preserved copies of kept snapshots may take (the snapshot store); past it the policy decides.</summary>
    public long SnapshotSpace { get; init; } = CacheReference.Size("snapshot-space");
    public SnapshotSpacePolicy SnapshotSpacePolicy { get; init; } = CacheReference.SpacePolicy("snapshot-space-policy");

    /// <summary>The retention cap in bytes: past it, retention shrinks so writers do not stall.</summary>
    public long RetentionCapBytes => RetentionCapBytesFor(LogCapacity);

    /// <summary>
    /// The retention cap for a log of <paramref name="capacity"/> bytes (the configured one, or less while
    /// its file system is full): the configured share, and never so much that the rest could not take
    /// one more batch and the end of a segment a batch did not fit in, or writers would wait for retention-time.
    /// </summary>
    public long RetentionCapBytesFor(long capacity) =>
        Math.Max(0, Math.Min((long)(capacity * RetentionMaxFraction), capacity - SegmentSize - ((long)MaxBatchBlocks << LogFormat.BlockShift)));
}
