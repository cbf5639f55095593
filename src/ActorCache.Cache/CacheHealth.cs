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
}
