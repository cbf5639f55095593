using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// What is wrong with a cache right now, and its running counters, as its parts report them for
/// status and metrics. Each field has one writer: the flusher (log failure, batches, syncs), the
/// destager (backing failure, blocks destaged, retention shrinks), writers (ring waits).
/// </summary>
internal sealed class CacheHealth
{
    private volatile BlockTargetException? _logFailure;
    private volatile string? _backingFailure;
    private long _batchesWritten, _syncs, _blocksDestaged, _ringWaits, _retentionShrinks, _syncPointRecords, _preserved, _expiries, _compactedBytes;

    /// <summary>The log's last write or sync failure, cleared once the log works again.</summary>
    public BlockTargetException? LogFailure
    {
        get => _logFailure;
        set => _logFailure = value;
    }

    /// <summary>
    /// Set for good when an fdatasync of the log failed: Linux may have dropped the unwritten pages and a
    /// later fdatasync can succeed without them, so nothing after that is trusted until the volume is
    /// opened again and recovered from what is really on disk.
    /// </summary>
    public volatile string? LogUntrusted;

    /// <summary>Why destaging to the backing fails, cleared once it works again.</summary>
    public string? BackingFailure
    {
        get => _backingFailure;
        set => _backingFailure = value;
    }

    public long BatchesWritten => Interlocked.Read(ref _batchesWritten);
    public long Syncs => Interlocked.Read(ref _syncs);
    public long BlocksDestaged => Interlocked.Read(ref _blocksDestaged);
    public long RingWaits => Interlocked.Read(ref _ringWaits);
    public long RetentionShrinks => Interlocked.Read(ref _retentionShrinks);
    public long SyncPointRecords => Interlocked.Read(ref _syncPointRecords);
    public long PreservedBlocks => Interlocked.Read(ref _preserved);
    public long Expiries => Interlocked.Read(ref _expiries);
    public long CompactedBytes => Interlocked.Read(ref _compactedBytes);

    public void CountBatch() => Interlocked.Increment(ref _batchesWritten);
    public void CountSync() => Interlocked.Increment(ref _syncs);
    public void CountSyncPointRecord() => Interlocked.Increment(ref _syncPointRecords);
    public void CountDestaged(int blocks) => Interlocked.Add(ref _blocksDestaged, blocks);
    public void CountRingWait() => Interlocked.Increment(ref _ringWaits);
    public void CountRetentionShrink() => Interlocked.Increment(ref _retentionShrinks);
    public void CountPreserved(int blocks) => Interlocked.Add(ref _preserved, blocks);
    public void CountExpiry() => Interlocked.Increment(ref _expiries);
    public void CountCompaction(long bytes) => Interlocked.Add(ref _compactedBytes, bytes);

    // Where a commit's time goes (tests/bench/bounds.sh divides them by the counts): Stopwatch ticks.
    private long _commits, _commitWakeTicks, _commitWriteTicks, _commitSyncTicks, _flushes, _flushTicks;
    private readonly LatencyHistogram _flushLatency = new();

    /// <summary>
    /// A group commit for FLUSH/FUA waiters: from the doorbell's ring to the flusher's start (0 when a tick
    /// woke it), writing what they wait for, and the fdatasync. Only the flusher counts these.
    /// </summary>
    public void CountCommit(long wakeTicks, long writeTicks, long syncTicks)
    {
        Interlocked.Increment(ref _commits);
        Interlocked.Add(ref _commitWakeTicks, wakeTicks);
        Interlocked.Add(ref _commitWriteTicks, writeTicks);
        Interlocked.Add(ref _commitSyncTicks, syncTicks);
    }

    /// <summary>A FLUSH from its call into the cache to the caller running again after it completed.</summary>
    public void CountFlush(long ticks)
    {
        Interlocked.Increment(ref _flushes);
        Interlocked.Add(ref _flushTicks, ticks);
        _flushLatency.Count(ticks);
    }

    /// <summary>FLUSHes by their time in the cache: cumulative counts per bucket of <see cref="LatencyHistogram"/>.</summary>
    public long[] FlushLatencyBuckets() => _flushLatency.Cumulative();

    public CommitTimes CommitTimes => new(Interlocked.Read(ref _commits), Seconds(ref _commitWakeTicks), Seconds(ref _commitWriteTicks),
        Seconds(ref _commitSyncTicks), Interlocked.Read(ref _flushes), Seconds(ref _flushTicks));

    private static double Seconds(ref long ticks) => (double)Interlocked.Read(ref ticks) / System.Diagnostics.Stopwatch.Frequency;
}

/// <summary>
/// Running totals of where commits spend their time: <see cref="Commits"/> group commits (one fdatasync
/// each, for every FLUSH/FUA waiting) with the seconds spent waking the flusher, writing and syncing, and
/// <see cref="Flushes"/> FLUSH calls with their seconds inside the cache.
/// </summary>
public readonly record struct CommitTimes(long Commits, double WakeSeconds, double WriteSeconds, double SyncSeconds, long Flushes, double FlushSeconds);
