using System.Runtime.CompilerServices;
using ActorCache.Blocks;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// The cache target (DESIGN §3), a façade over parts that each own one piece of state: writes go
/// through the <see cref="CacheWriter"/> into ring slots and the <see cref="AppendQueue"/> (log order,
/// and the one writer of the index); the flusher actor's <see cref="LogAppender"/> puts them in the
/// log and runs group commit against the <see cref="DurabilityBarrier"/>; the destager actor's
/// <see cref="DestagePlanner"/> moves history older than the retention window to the backing. Reads go
/// through the <see cref="CacheReader"/> and the lock-free index.
/// </summary>
public sealed class WriteBackCache : IBlockTarget
{
    private static long _incarnations;

    private readonly string _name;
    private readonly IBlockTarget _backing;
    private readonly RingBuffer _ring;
    private readonly ILogMedium _medium;
    private readonly CacheOptions _options;
    private readonly ILogger _logger;
    private readonly LogDamage _damage;
    private readonly LogHistory _history;
    private readonly DurabilityBarrier _barrier;
    private readonly LogWindow _window;
    private readonly AppendQueue _queue;
    private readonly CacheReader _reader;
    private readonly CacheWriter _writer;
    private readonly CacheHealth _health = new();
    private readonly LogAppender _appender;
    private readonly Doorbell _flusherBell = new(), _destagerBell = new();
    private readonly IActorRef _flusher, _destager;
    private readonly ProtectedPoints _protected;
    private readonly SnapshotStore _store;
    private readonly IndexCheckpointer _indexSaves;
    private readonly LogScrub _scrub;
    private readonly CancellationTokenSource _scrubStop = new();
    private readonly Task _scrubRun;
    private volatile CacheMode _mode;
    private volatile bool _flusherGone, _destagerGone;

    private WriteBackCache(string name, IBlockTarget backing, RingBuffer ring, ILogMedium medium, CacheOptions options, ILogger logger,
        IActorRefFactory actors, ILogDirectory directory, Checkpoint checkpoint, BlockIndex index, RecoveryResult recovery, CacheMode mode,
        SnapshotStore store, IEnumerable<long> kept, ExpiredPoints expiries, IReadOnlyList<long> expiredAtOpen, Func<long, bool>? pinned)
    {
        _name = name;
        _backing = backing;
        _ring = ring;
        _medium = medium;
        _options = options;
        _logger = logger;
        _mode = mode;
        Recovery = recovery;
        ExpiredAtOpen = expiredAtOpen;
        VolumeId = checkpoint.VolumeId;
        _damage = LogDamage.From(recovery);
        // What the persisted index covers was not read at open: verified in the background, and by any read or destage that gets there first.
        _scrub = recovery.SkippedBytes > 0
            ? new LogScrub(name, medium, checkpoint.VolumeId, recovery.ReplayedFrom - recovery.SkippedBytes, checkpoint.Sequence, recovery.ReplayedFrom,
                options.MaxBatchBlocks, _damage, logger)
            : LogScrub.None;
        _history = new LogHistory(recovery.SyncPoints);
        // A destage step the last run began and did not complete may have overwritten blocks the points before it read.
        _history.TrimBefore(checkpoint.FirstRestorable - 1);
        _barrier = new DurabilityBarrier(_history, recovery.Generation - 1, recovery.NextSequence - 1, _health.CountFlush);
        _window = new LogWindow(checkpoint.Horizon, recovery.Tail, options.LogCapacity);
        _queue = new AppendQueue(index, ring.SlotCount, recovery.LastBatch) { WriteBack = mode == CacheMode.WriteBack };
        _reader = new CacheReader(ring, medium, backing, _damage, _scrub, name);
        var line = new RingLine(); // this volume's claims on the node's ring, from the writer's claim to the log's release
        _writer = new CacheWriter(name, ring, line, _queue, _reader, _flusherBell, _health, options);
        _appender = new LogAppender(name, medium, _queue, ring, line, _barrier, _window, _health, options, logger, checkpoint.VolumeId, recovery);
        _store = store;
        _protected = new ProtectedPoints(kept);
        var planner = new DestagePlanner(name, medium, _window, _history, _health, options, logger, directory, checkpoint, _protected, store, _scrub);

        // Actor names carry a number so a volume reopened at once never collides with its predecessor's actors.
        var incarnation = Interlocked.Increment(ref _incarnations);
        var escaped = Uri.EscapeDataString(name);
        var space = new SnapshotSpace(name, store, _protected, planner, _health, options, logger, expiries, sequence => PointExpired?.Invoke(sequence), pinned);
        _destager = actors.ActorOf(DestagerActor.Props(new DestagerParts(name, planner, new DestageWriter(medium, backing),
            new BlockPreserver(backing, store, _health), space, _queue, backing, _health, options, logger, _destagerBell, () => _damage.Reason is null,
            () => _destagerGone = true)), $"destager-{escaped}-{incarnation}");
        _destagerBell.Attach(_destager);
        _flusher = actors.ActorOf(FlusherActor.Props(new FlusherParts(name, _appender, _flusherBell, _destager, _destagerBell, _window, _health,
            _barrier, options, logger, OnFlusherStopped)), $"flusher-{escaped}-{incarnation}");
        _flusherBell.Attach(_flusher);
        _indexSaves = new IndexCheckpointer(name, _queue, medium, directory, _window, _barrier, _history, checkpoint.VolumeId, options, logger,
            () => _mode == CacheMode.WriteBack && _damage.Reason is null && !_flusherGone);
        // What the persisted index covers is saved; a tail replayed after it (or a whole log replayed) is not yet.
        _indexSaves.Start(recovery.SkippedBytes > 0 ? recovery.ReplayedFrom : -1);
        _scrubRun = _scrub.Done ? Task.CompletedTask : Task.Run(() => _scrub.RunAsync(_scrubStop.Token));
    }

    /// <summary>
    /// Opens the cache of one volume: loads the checkpoint (or starts a new log), replays the log into
    /// the index, and starts the flusher and destager. With corruption found, the cache comes up read-only.
    /// </summary>
    /// <param name="kept">The batch sequence numbers of the sync points kept snapshots name: they stay protected from the start.</param>
    /// <param name="medium">Where the log segments are; by default files in the log directory.</param>
    /// <param name="directory">Where the checkpoint and the snapshot store are; by default the log directory's files.</param>
    /// <param name="pinned">
    /// Whether something the host knows of still needs a kept point although nobody reads it now (a thin clone of its snapshot that is
    /// not open: offline, or opening after this volume): such a point is never the one to expire for snapshot-space.
    /// </param>
    public static WriteBackCache Open(string name, IBlockTarget backing, RingBuffer ring, CacheOptions options, CacheMode mode,
        ILogger logger, IActorRefFactory actors, IProgress<(long Done, long Total)>? progress = null, ILogMedium? medium = null,
        IEnumerable<long>? kept = null, ILogDirectory? directory = null, Func<long, bool>? pinned = null)
    {
        if (ring.SlotCount < 2 * options.MaxBatchBlocks || ring.Bytes < 2L * (32 << 20))
            throw new ArgumentException("the ring must hold at least two batches and two maximum-size requests (64 MiB)");
        if ((options.MaxBatchBlocks + 1L) * LogFormat.BlockSize > options.SegmentSize)
            throw new ArgumentException($"a batch of {options.MaxBatchBlocks} blocks plus its header does not fit in a {options.SegmentSize}-byte log segment");
        LibC.CreateDirectoryDurably(options.LogDirectory);
        directory ??= new LogDirectory(options.LogDirectory);
        var checkpoint = Checkpoint.Load(directory);
        if (checkpoint is null)
        {
            checkpoint = Checkpoint.New();
            checkpoint.Save(directory);
        }
        medium ??= new SegmentFiles(options.LogDirectory, options.SegmentSize, maxFiles: options.LogCapacity / options.SegmentSize);
        var index = new BlockIndex(backing.Size >> LogFormat.BlockShift);
        var started = DateTime.UtcNow;
        var recovery = IndexRecovery.Recover(name, medium, directory, checkpoint, index, options, logger, progress);
        // What a killed process left in the page cache is served from now on: durable first, so a later
        // FLUSH that syncs only new segments cannot leave a log whose surviving part is not a prefix.
        if (recovery.BatchesReplayed > 0) medium.SyncAll();
        if (recovery.BatchesReplayed > 0 || recovery.PersistedEntries > 0)
            logger.LogInformation("volume {Name}: {Persisted}replayed {Batches} log batches ({Bytes} bytes) in {Elapsed:F2}s, {Blocks} blocks cached, generation {Generation}",
                name, recovery.SkippedBytes > 0 ? $"read the persisted index ({recovery.PersistedEntries} entries covering {recovery.SkippedBytes} bytes of log), " : "",
                recovery.BatchesReplayed, recovery.BytesReplayed, (DateTime.UtcNow - started).TotalSeconds, index.CachedBlocks, recovery.Generation);
        if (recovery.TornTail is not null) logger.LogWarning("volume {Name}: {TornTail}", name, recovery.TornTail);
        if (recovery.Corruption is not null)
            logger.LogError("volume {Name} is DEGRADED and read-only: {Corruption}. Blocks whose newest version is in the damaged record " +
                            "fail with EIO; everything else reads normally. Copy the data off (nbdcopy) and restore the volume from a replica or snapshot",
                name, recovery.Corruption);
        var store = SnapshotStore.Open(directory, checkpoint.VolumeId, checkpoint.StoreLength);
        if (store.Damage is not null) logger.LogError("volume {Name}: {Damage}", name, store.Damage);
        var expiries = ExpiredPoints.Load(directory);
        var stillKept = expiries.Sift(kept ?? [], out var expiredAtOpen);
        foreach (var sequence in expiredAtOpen)
            logger.LogWarning("volume {Name}: the kept point at batch {Sequence} expired before a restart; its snapshots are reported expired again", name, sequence);
        return new WriteBackCache(name, backing, ring, medium, options, logger, actors, directory, checkpoint, index, recovery, mode, store, stillKept,
            expiries, expiredAtOpen, pinned);
    }

    /// <summary>
    /// What both the backing and the index cover. An online grow enlarges the backing first and the index right after
    /// (<see cref="TrySendAsync"/>); a write checked against the backing's new size in between would fail inside the
    /// queue's lock with its record queued already.
    /// </summary>
    public long Size => Math.Min(_backing.Size, Index.Blocks << LogFormat.BlockShift);

    public TargetCapabilities Capabilities =>
        _backing.Capabilities | TargetCapabilities.Trim | TargetCapabilities.FastZero | (_damage.Any ? TargetCapabilities.ReadOnly : 0);

    public CacheMode Mode => _mode;
    public RecoveryResult Recovery { get; }
    /// <summary>The live index (read-only for everyone but the append queue).</summary>
    public BlockIndex Index => _queue.Index;
    public Guid VolumeId { get; }

    /// <summary>
    /// Drawn at each open: batches are numbered afresh from the last one recovered, so after a crash a number may name
    /// another batch than before; a replica tells which numbering it holds by this id.
    /// </summary>
    public Guid Incarnation { get; } = Guid.NewGuid();

    /// <summary>Why the volume refuses writes (corruption found by recovery), or null.</summary>
    public string? ReadOnlyReason => _damage.Reason;

    /// <summary>The open generation: the one after the newest closed sync point. Every completed FLUSH or FUA closes one.</summary>
    public long Generation => _barrier.ClosedGeneration + 1;

    /// <summary>The sync points the log still covers, oldest first: every generation that can be brought back.</summary>
    public LogHistory History => _history;

    /// <summary>Group commit's finish line: replication joins it so a FLUSH also waits for peers (protocol C).</summary>
    public DurabilityBarrier Barrier => _barrier;

    /// <summary>Persists the index now (it is also persisted periodically and at a clean close); false when there was nothing to save.</summary>
    public Task<bool> PersistIndexAsync(CancellationToken cancellationToken = default) => _indexSaves.SaveAsync(cancellationToken);

    /// <summary>Completes when the background verification of the records the persisted index covered has ended (at once after a full replay).</summary>
    public Task Scrubbed => _scrubRun;

    /// <summary>How many times the index was persisted since the volume opened.</summary>
    public long IndexSaves => _indexSaves.Saves;

    /// <summary>Receive every batch the log writes from now on, with its data pinned in the ring until released.</summary>
    public IDisposable SubscribeBatches(ILogSubscriber subscriber) => _appender.Subscribe(subscriber);

    /// <summary>
    /// Reads published batches back from the log, from batch <paramref name="sequence"/> (whose header a subscriber saw at
    /// <see cref="LoggedBatch.Address"/> <paramref name="address"/>, or an earlier batch's), while the log still holds them.
    /// </summary>
    public LogTailReader OpenLogTail(long address, long sequence) => new(_medium, VolumeId, address, sequence);

    public CacheStatistics Statistics => new()
    {
        BatchesWritten = _health.BatchesWritten,
        Syncs = _health.Syncs,
        SyncPointRecords = _health.SyncPointRecords,
        CommitTimes = _health.CommitTimes,
        FlushLatencyBuckets = _health.FlushLatencyBuckets(),
        BlocksDestaged = _health.BlocksDestaged,
        RingWaits = _health.RingWaits,
        RetentionShrinks = _health.RetentionShrinks,
        CorruptRecords = (Recovery.Corruption is null ? 0 : 1) + _scrub.CorruptRecords,
        ScrubTotalBytes = _scrub.TotalBytes,
        ScrubVerifiedBytes = _scrub.VerifiedBytes,
        TornTails = Recovery.TornTail is null ? 0 : 1,
        CachedBlocks = Index.CachedBlocks,
        LogBytes = _window.Used,
        LogCapacity = _window.Capacity,
        Generation = Generation,
        RingFreeSlots = _ring.FreeSlots,
        IndexBytes = Index.FootprintBytes,
        OldestRestorableMicros = _history.ToList() is { Count: > 0 } points ? points[0].TimeMicros : 0,
        PreservedBlocks = _store.PreservedBlocks,
        PreservedBytes = _store.Length,
        ExpiredSnapshots = _health.Expiries,
        ProtectedPoints = _protected.Count,
        BackingFailure = _health.BackingFailure,
        LogFailure = _health.LogFailure?.Message,
    };

    private void ThrowIfReadOnly()
    {
        if (_damage.Reason is { } reason) BlockThrow.Error(BlockError.ReadOnly, $"volume {_name} is read-only: {reason}");
    }

    // ---- writes -------------------------------------------------------------------------------

    /// <summary>
    /// Whether a write that goes to the backing must be durable there when it completes: a FUA, or any write outside pass-through.
    /// Read when the write is sent, not when it was routed: a switch into write-back may have completed meanwhile (a write that
    /// found the cache not taking writes yet), and write-back's FLUSH syncs only the log, so such a write must not wait for one.
    /// </summary>
    private bool DurableOnBacking(bool fua) => fua || _mode != CacheMode.PassThrough;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        if (_mode != CacheMode.WriteBack)
        {
            await _backing.WriteAsync(offset, data, DurableOnBacking(fua), cancellationToken).ConfigureAwait(false);
            return;
        }
        var ticket = await _writer.WriteAsync(offset, data, cancellationToken).ConfigureAwait(false);
        if (ticket == AppendQueue.NotWriteBack)
            await _backing.WriteAsync(offset, data, DurableOnBacking(fua), cancellationToken).ConfigureAwait(false);
        else if (fua) await WaitDurableAsync(ticket).ConfigureAwait(false);
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) =>
        ZeroAsync(offset, length, LogEntryType.Trim, fastOnly: false, fua, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default) =>
        ZeroAsync(offset, length, mayDeallocate ? LogEntryType.Trim : LogEntryType.Zero, fastOnly, fua, cancellationToken);

    private async ValueTask ZeroAsync(long offset, long length, LogEntryType type, bool fastOnly, bool fua, CancellationToken ct)
    {
        ThrowIfReadOnly();
        var ticket = _mode == CacheMode.WriteBack ? await _writer.ZeroAsync(offset, length, type, ct).ConfigureAwait(false) : AppendQueue.NotWriteBack;
        if (ticket != AppendQueue.NotWriteBack)
        {
            if (fua) await WaitDurableAsync(ticket).ConfigureAwait(false);
            return;
        }
        var durable = DurableOnBacking(fua);
        if (type == LogEntryType.Trim) await _backing.TrimAsync(offset, length, durable, ct).ConfigureAwait(false);
        else await _backing.WriteZeroesAsync(offset, length, mayDeallocate: false, fastOnly, durable, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// A replicated batch applied as one request (DESIGN §4: a secondary appends its primary's batches to its own log):
    /// <paramref name="data"/> holds the data entries' blocks in entry order, as a log record does. It costs one claim of
    /// ring slots and one hold of the log order lock instead of one of each per entry, and it lands in one batch of this
    /// log whenever it fits. False, with nothing applied, when the cache is not in write-back or the batch is too large for
    /// a share of the ring: the caller then applies its entries one by one.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> TryApplyBatchAsync(ReadOnlyMemory<LogEntry> entries, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        CheckBatch(entries.Span, data.Length);
        if (_mode != CacheMode.WriteBack || data.Length >> LogFormat.BlockShift > _ring.SlotCount / 4) return false;
        if (entries.Length == 0) return true;
        return await _writer.WriteBatchAsync(entries, data, cancellationToken).ConfigureAwait(false) != AppendQueue.NotWriteBack;
    }

    /// <summary>
    /// The same as <see cref="TryApplyBatchAsync"/> with the data received straight into ring slots (DESIGN §3's staged
    /// writes, for a secondary): claims slots for <paramref name="dataBlocks"/> blocks and hands their memory to
    /// <paramref name="staged"/>, in order. False, with nothing claimed, when the cache is not in write-back or the batch is
    /// too large for a share of the ring. Then <see cref="CommitStagedBatchAsync"/> or <see cref="AbandonStagedWrite"/>.
    /// </summary>
    public async ValueTask<bool> TryStageBatchAsync(int dataBlocks, StagedWrite staged, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        if (_mode != CacheMode.WriteBack || dataBlocks < 1 || dataBlocks > _ring.SlotCount / 4) return false;
        await _writer.StageAsync(0, dataBlocks << LogFormat.BlockShift, staged, this, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// Queues a batch staged with <see cref="TryStageBatchAsync"/>, its data now in the slots in entry order. False when the
    /// cache left write-back meanwhile: the slots are still staged, for the caller to copy the data out, abandon them and
    /// apply the entries one by one. Entries are checked as <see cref="TryApplyBatchAsync"/> checks them.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> CommitStagedBatchAsync(ReadOnlyMemory<LogEntry> entries, StagedWrite staged)
    {
        try
        {
            CheckBatch(entries.Span, staged.Length);
        }
        catch
        {
            AbandonStagedWrite(staged);
            throw;
        }
        return await _writer.CommitStagedBatchAsync(entries, staged).ConfigureAwait(false) != AppendQueue.NotWriteBack;
    }

    private void CheckBatch(ReadOnlySpan<LogEntry> entries, long dataBytes)
    {
        // The index's size, not the backing's: an online grow enlarges the backing first, and an entry past the index
        // would fail inside the lock with earlier entries of the batch queued already.
        var blocks = Index.Blocks;
        long dataBlocks = 0;
        foreach (var entry in entries)
        {
            if (entry.BlockCount < 1 || entry.Block < 0 || entry.Block > blocks - entry.BlockCount) // (a sum could overflow)
                throw new ArgumentOutOfRangeException(nameof(entries), $"volume {_name}: an entry of {entry.BlockCount} blocks at block {entry.Block}, outside the volume");
            if (entry.Type == LogEntryType.Data) dataBlocks += entry.BlockCount;
        }
        if (dataBlocks << LogFormat.BlockShift != dataBytes)
            throw new ArgumentException($"volume {_name}: {dataBytes} bytes of data for {dataBlocks} blocks of data entries", nameof(dataBytes));
    }

    /// <summary>
    /// Bytes of writes accepted and not yet in the log, read without a lock: what replication has not been handed yet. A
    /// primary adds them to what its links hold when it decides whether a write waits for a slow peer.
    /// </summary>
    public long UnloggedBytes => _queue.PendingDataBlocksNow << LogFormat.BlockShift;

    /// <summary>Staged writes (DESIGN §3): a whole-block write's payload is received straight into the ring slots it will be logged from.</summary>
    public async ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default)
    {
        if (_mode != CacheMode.WriteBack || length == 0 || ((offset | (long)length) & (LogFormat.BlockSize - 1)) != 0) return false;
        ThrowIfReadOnly();
        await _writer.StageAsync(offset, length, staged, this, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <remarks>
    /// The common case is not an async method: a FUA write's caller awaits the barrier's pooled waiter itself (see
    /// <see cref="FlushAsync"/>: a box rented here and given back on the flusher's thread would miss the pool).
    /// </remarks>
    public ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        if (_mode != CacheMode.WriteBack) return CommitStagedSlowlyAsync(staged, fua, AppendQueue.NotWriteBack, cancellationToken);
        long ticket;
        try
        {
            ticket = _writer.CommitStaged(staged);
        }
        catch (Exception e)
        {
            return ValueTask.FromException(e); // the volume is closing: failed like the async method it stands for, not thrown at the caller
        }
        if (ticket is AppendQueue.Paused or AppendQueue.NotWriteBack) return CommitStagedSlowlyAsync(staged, fua, ticket, cancellationToken);
        return fua ? WaitDurableAsync(ticket) : ValueTask.CompletedTask;
    }

    /// <summary>A staged write the log did not take at once: held by a pause, or the volume left write-back under it.</summary>
    private async ValueTask CommitStagedSlowlyAsync(StagedWrite staged, bool fua, long ticket, CancellationToken cancellationToken)
    {
        while (ticket == AppendQueue.Paused)
        {
            await _queue.Resumed.ConfigureAwait(false); // a barrier across volumes (or a mode switch) holds writes for a moment
            ticket = _writer.CommitStaged(staged);
        }
        if (ticket == AppendQueue.NotWriteBack) await WriteStagedThroughAsync(staged, fua, cancellationToken).ConfigureAwait(false);
        else if (fua) await WaitDurableAsync(ticket).ConfigureAwait(false);
    }

    public void AbandonStagedWrite(StagedWrite staged) => _writer.Abandon(staged);

    /// <summary>The volume left write-back while the payload was arriving: the write goes to the backing like any write-through write.</summary>
    private async ValueTask WriteStagedThroughAsync(StagedWrite staged, bool fua, CancellationToken ct)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(staged.Length);
        try
        {
            staged.CopyTo(buffer);
            await _backing.WriteAsync(staged.Offset, buffer.AsMemory(0, staged.Length), DurableOnBacking(fua), ct).ConfigureAwait(false);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            _writer.Abandon(staged);
        }
    }

    // ---- flush --------------------------------------------------------------------------------

    /// <summary>In write-back mode a FLUSH only joins the group commit; other modes fdatasync the backing on the caller's thread.</summary>
    public bool FlushesWithoutBlocking => _mode == CacheMode.WriteBack;

    /// <remarks>
    /// Not an async method: the caller awaits the barrier's pooled waiter itself (which also times the FLUSH). An async
    /// method's box, even a pooled one, is rented on the thread that calls and given back on the one that completes
    /// (the flusher), so at queue depth 1 it would be allocated about every other FLUSH.
    /// </remarks>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        _mode != CacheMode.WriteBack
            ? FlushBackingAsync(cancellationToken)
            : WaitDurableAsync(_queue.AppendedTicket, System.Diagnostics.Stopwatch.GetTimestamp());

    /// <summary>Not in write-back: the backing's own FLUSH, whose failure (a synchronous fdatasync's) comes back as a faulted task, not thrown.</summary>
    private async ValueTask FlushBackingAsync(CancellationToken cancellationToken) => await _backing.FlushAsync(cancellationToken).ConfigureAwait(false);

    /// <summary>Waits until a sync point covering <paramref name="ticket"/> is durable (group commit with every other waiter); a FLUSH passes its arrival.</summary>
    private ValueTask WaitDurableAsync(long ticket, long flushArrived = 0)
    {
        if (_flusherGone) return ValueTask.FromException(Closed());
        var wait = _barrier.WaitAsync(ticket, flushArrived);
        if (!wait.IsCompleted) _flusherBell.Ring();
        return wait;
    }

    private BlockTargetException Closed() => new(BlockError.ShuttingDown, $"volume {_name} is closed");

    /// <summary>The flusher actor is gone (the cache closed, or its actor system stopped): writes and FLUSHes fail instead of waiting for it.</summary>
    private void OnFlusherStopped()
    {
        _flusherGone = true;
        _queue.Close(Closed());
        _barrier.Refuse(Closed());
    }

    // ---- reads --------------------------------------------------------------------------------

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        _reader.ReadAsync(Index, offset, destination, cancellationToken);

    public bool TryReadWithoutWaiting(long offset, Span<byte> destination) => _reader.TryReadWithoutWaiting(Index, offset, destination);

    public ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents, CancellationToken cancellationToken = default) =>
        _reader.GetAllocationAsync(Index, offset, length, extents, cancellationToken);

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        _backing.PrefetchAsync(offset, length, cancellationToken);

    // ---- history -----------------------------------------------------------------------------

    /// <summary>
    /// Keeps the sync point whose batch is <paramref name="sequence"/> restorable from now on, however far
    /// the destager goes (a kept snapshot): false when it is no longer restorable.
    /// </summary>
    public Task<bool> ProtectAsync(long sequence) => ProtectAsync(sequence, kept: true);

    private async Task<bool> ProtectAsync(long sequence, bool kept)
    {
        var done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _destager.Tell(new DestagerActor.Protect(sequence, kept, done));
        if (!await done.Task.ConfigureAwait(false)) return false;
        ThrowUnlessStillWriteBack(sequence, kept);
        return true;
    }

    /// <summary>
    /// A point protected while the volume was leaving write-back: the switch may not have seen it, so the
    /// protection is given back and the request refused (the other half of the check in <see cref="SetModeAsync"/>).
    /// </summary>
    private void ThrowUnlessStillWriteBack(long sequence, bool kept)
    {
        Interlocked.MemoryBarrier();
        if (_mode == CacheMode.WriteBack && !_leavingWriteBack) return;
        _protected.Remove(sequence, kept);
        ThrowIfNoHistory();
        throw new BlockTargetException(BlockError.InvalidRequest, $"volume {_name} is leaving write-back: it keeps no history from now on");
    }

    // Set while a switch out of write-back checks for protected points (the two halves of that handshake): the mode itself is
    // published only once the check has passed, since a write that reads a mode other than write-back goes to the backing at once,
    // past the copy-on-write a protected point relies on.
    private volatile bool _leavingWriteBack;

    /// <summary>Lets the destager move past a point a kept snapshot protected (the snapshot was deleted).</summary>
    public void Unprotect(long sequence) => _protected.Remove(sequence, kept: true);

    /// <summary>
    /// A kept snapshot's point was given up to stay within <c>snapshot-space</c> (policy expire-oldest):
    /// raised on the destager's thread with the point's batch sequence; the host marks its snapshots expired.
    /// </summary>
    public event Action<long>? PointExpired;

    /// <summary>
    /// Points named kept at open that expired before the host recorded it (a crash came between): not protected, and the
    /// host marks their snapshots expired as it would on <see cref="PointExpired"/>.
    /// </summary>
    public IReadOnlyList<long> ExpiredAtOpen { get; }

    /// <summary>
    /// The volume as it was at <paramref name="point"/>, read-only, for as long as the view stays open
    /// (it protects the point meanwhile). Fails when the point is no longer restorable.
    /// </summary>
    public async Task<GenerationView> OpenViewAsync(SyncPoint point)
    {
        var done = new TaskCompletionSource<BlockIndex?>(TaskCreationOptions.RunContinuationsAsynchronously);
        _destager.Tell(new DestagerActor.OpenView(point.Sequence, Index.Blocks, done));
        var index = await done.Task.ConfigureAwait(false) ?? throw NotRestorable(PointQuery.Known(point));
        ThrowUnlessStillWriteBack(point.Sequence, kept: false);
        return new GenerationView(_name, point, index, _medium, _backing, _store, _window, () => _protected.Remove(point.Sequence, kept: false), _scrub, _damage);
    }

    /// <summary>
    /// The blocks written after batch <paramref name="sequence"/> (a superset, as <see cref="DiffPoints"/>), or null when
    /// the log no longer covers every batch after it (or the cache keeps no history): what a replica changed since a
    /// point in its history, which a resync after a failover narrows itself to.
    /// </summary>
    public async Task<System.Collections.BitArray?> ChangedSinceAsync(long sequence)
    {
        // A point after the last durable batch was never in this log (another log, since replaced, numbered it).
        if (_mode != CacheMode.WriteBack || sequence < 0 || sequence > _barrier.Local.DurableSequence || Index.Blocks > int.MaxValue) return null;
        var protect = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _destager.Tell(new DestagerActor.Protect(sequence, false, protect));
        if (!await protect.Task.ConfigureAwait(false)) return null;
        try
        {
            var done = new TaskCompletionSource<System.Collections.BitArray>(TaskCreationOptions.RunContinuationsAsynchronously);
            _destager.Tell(new DestagerActor.ChangedSince(sequence, (int)Index.Blocks, done));
            System.Collections.BitArray changed;
            try
            {
                changed = await done.Task.ConfigureAwait(false);
            }
            catch (InvalidDataException)
            {
                return null; // a record cannot be read back: the log cannot tell
            }
            // A cache that left write-back meanwhile may have destaged past the point without preserving: unknown.
            Interlocked.MemoryBarrier();
            return _mode == CacheMode.WriteBack ? changed : null;
        }
        finally
        {
            _protected.Remove(sequence, kept: false);
        }
    }

    /// <summary>The byte ranges that may differ between two points (<paramref name="toQuery"/> null: now), in offset order.</summary>
    private async Task<IReadOnlyList<ChangedRange>> DiffAsync(PointQuery fromQuery, PointQuery? toQuery)
    {
        var from = Resolve(fromQuery);
        var to = toQuery is null ? (SyncPoint?)null : Resolve(toQuery);
        if (to is { } end && end.Sequence < from.Sequence) throw new BlockTargetException(BlockError.InvalidRequest,
            $"volume {_name}: {toQuery} is older than {fromQuery}; name the older point first");
        // Only a point the destager still honours can be compared: one the log covers, or a kept one.
        if (!await ProtectAsync(from.Sequence, kept: false).ConfigureAwait(false)) throw NotRestorable(fromQuery);
        try
        {
            var done = new TaskCompletionSource<SortedSet<long>>(TaskCreationOptions.RunContinuationsAsynchronously);
            _destager.Tell(new DestagerActor.Diff(from.Sequence, to?.Sequence, Index.Blocks, done));
            var blocks = await done.Task.ConfigureAwait(false);
            var ranges = new List<ChangedRange>();
            foreach (var block in blocks)
            {
                var offset = block << LogFormat.BlockShift;
                if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == offset)
                    ranges[^1] = ranges[^1] with { Length = ranges[^1].Length + LogFormat.BlockSize };
                else ranges.Add(new ChangedRange(offset, LogFormat.BlockSize));
            }
            return ranges;
        }
        finally
        {
            _protected.Remove(from.Sequence, kept: false);
        }
    }

    // ---- control and status -------------------------------------------------------------------

    /// <summary>Handles the mode switch and the history messages; anything else goes to the backing (<see cref="GrowTarget"/> also grows the index).</summary>
    public async ValueTask<bool> TrySendAsync(TargetMessage message, CancellationToken cancellationToken = default)
    {
        switch (message)
        {
            case SetCacheMode set:
                await SetModeAsync(set.Mode).ConfigureAwait(false);
                return true;
            case ReadHistory read when _mode != CacheMode.WriteBack:
                read.Result = []; // writes bypass the log: nothing before them is restorable
                return true;
            case ReadHistory read:
                var tail = _window.Tail;
                read.Result = [.. _history.ToList().Select(p => new HistoryEntry(p.Generation, p.Time, Math.Max(0, tail - p.EndAddress), p))];
                return true;
            case OpenPastView open:
                ThrowIfNoHistory();
                open.Result = await OpenViewAsync(Resolve(open.Query)).ConfigureAwait(false);
                return true;
            case KeepPoint keep:
                ThrowIfNoHistory();
                var point = Resolve(keep.Query);
                if (!await ProtectAsync(point.Sequence).ConfigureAwait(false)) throw NotRestorable(keep.Query);
                keep.Result = point;
                return true;
            case ReleasePoint release:
                Unprotect(release.Sequence);
                return true;
            case DiffPoints diff:
                ThrowIfNoHistory();
                diff.Result = await DiffAsync(diff.From, diff.To).ConfigureAwait(false);
                return true;
            case ReadExclusiveBytes exclusive:
                exclusive.Result = _store.ExclusiveBytes(_protected);
                return true;
            case PauseWrites:
                _queue.Pause(PauseHolder.Barrier);
                return true;
            case ResumeWrites:
                _queue.Resume(PauseHolder.Barrier);
                return true;
            default:
                if (!await _backing.TrySendAsync(message, cancellationToken).ConfigureAwait(false)) return false;
                // The backing has room for the new blocks (its size is this cache's size); the index covers them too.
                if (message is GrowTarget grow) _queue.Grow(grow.NewSize >> LogFormat.BlockShift);
                return true;
        }
    }

    /// <summary>The sync point a query names, if the log still covers it (or it is known exactly: a kept snapshot's).</summary>
    private SyncPoint Resolve(PointQuery query)
    {
        var found = query.Exact ?? (query.Generation is { } generation ? _history.Find(generation)
            : query.Time is { } time ? _history.AtOrBefore(time)
            : _history.Latest);
        return found ?? throw NotRestorable(query);
    }

    private BlockTargetException NotRestorable(PointQuery query)
    {
        var points = _history.ToList();
        var window = points.Count == 0
            ? "the log holds no restorable point now (nothing was flushed since everything was destaged)"
            : $"restorable now: generation {points[0].Generation} ({points[0].Time:yyyy-MM-ddTHH:mm:ssZ}) to generation {points[^1].Generation} ({points[^1].Time:yyyy-MM-ddTHH:mm:ssZ})";
        return new BlockTargetException(BlockError.InvalidRequest, $"volume {_name}: {query} is not restorable; {window}");
    }

    /// <summary>Adds <see cref="CacheStatistics"/> (and, for a damaged log, why writes are refused), then the backing's status.</summary>
    public void CollectStatus(TargetStatus status)
    {
        status.Add(Statistics);
        if (_damage.Reason is { } reason) status.RefuseWrites(reason);
        _backing.CollectStatus(status);
    }

    // ---- modes --------------------------------------------------------------------------------

    /// <summary>
    /// Switches mode on the live volume. Leaving write-back drains first: every dirty block is flushed
    /// to the log and destaged to the backing, then writes go straight through.
    /// </summary>
    private void ThrowIfHistoryProtected(CacheMode mode)
    {
        if (!_protected.IsEmpty)
            throw new InvalidOperationException($"volume {_name} cannot leave write-back for {mode}: {_protected.Count} kept snapshot(s) or open view(s) " +
                                                "of its past read its history, which only write-back keeps; delete the snapshots (and disconnect the views) first");
    }

    /// <summary>History (views, kept points, diffs) exists only in write-back: other modes write past the log.</summary>
    private void ThrowIfNoHistory()
    {
        if (_mode != CacheMode.WriteBack)
            throw new BlockTargetException(BlockError.InvalidRequest,
                $"volume {_name} is {(_mode == CacheMode.WriteThrough ? "write-through" : "pass-through")}: it keeps no history (writes bypass the log); " +
                "switch it to write-back to keep snapshots");
    }

    public async Task SetModeAsync(CacheMode mode)
    {
        if (mode == _mode) return;
        if (_damage.Reason is { } damaged)
            throw new InvalidOperationException($"volume {_name} is read-only with a damaged log ({damaged}); its mode cannot change");
        if (_mode != CacheMode.WriteBack)
        {
            // Points from before are stale: writes since went to the backing past the log.
            if (mode == CacheMode.WriteBack) _history.ForgetAll();
            _mode = mode;
            _queue.WriteBack = mode == CacheMode.WriteBack;
        }
        else
        {
            // Writes that bypass the log would overwrite, uncopied, backing blocks a kept snapshot or an open
            // view of the past still reads: history is a write-back volume's.
            ThrowIfHistoryProtected(mode);
            // The bulk first, while writes go on; then the rest with new writes held back, so nothing
            // enters the cache after it is empty: from then on writes go to the backing.
            await DrainAsync().ConfigureAwait(false);
            _queue.Pause(PauseHolder.ModeSwitch);
            try
            {
                await DrainAsync().ConfigureAwait(false);
                // Leaving first, then the check (a full fence between): a view or snapshot protecting a point meanwhile
                // either is seen here or sees the flag itself and gives the point back (ThrowUnlessStillWriteBack).
                _leavingWriteBack = true;
                Interlocked.MemoryBarrier();
                if (!_protected.IsEmpty)
                {
                    _leavingWriteBack = false;
                    ThrowIfHistoryProtected(mode);
                }
                // Writes are held meanwhile: once resumed they find the cache closed to them and go to the backing.
                _queue.WriteBack = false;
                _mode = mode;
                _leavingWriteBack = false;
                _history.ForgetAll(); // no point from before stays restorable once writes bypass the log
            }
            finally
            {
                _queue.Resume(PauseHolder.ModeSwitch);
            }
        }
        _logger.LogInformation("volume {Name} is now {Mode}", _name, mode);
    }

    /// <summary>Flushes everything to the log, then destages the whole log to the backing regardless of retention.</summary>
    public async Task DrainAsync()
    {
        await FlushAsync().ConfigureAwait(false);
        var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _destager.Tell(new DestagerActor.Drain(_window.DurableTail, drained));
        await drained.Task.ConfigureAwait(false);
    }

    // ---- closing ------------------------------------------------------------------------------

    /// <summary>
    /// Closes the cache: makes every acknowledged write durable (waiting for the destager to make room
    /// in a full log), then stops its actors and closes the log and the backing. If the log cannot take
    /// the writes (it fails, or it is full and the backing refuses destaging) the report says how many
    /// bytes of acknowledged writes were not made durable, and why.
    /// </summary>
    public ValueTask<CloseReport> CloseAsync()
    {
        // Everyone who asks gets the one close and its report.
        var closing = new Lazy<Task<CloseReport>>(CloseOnceAsync);
        return new ValueTask<CloseReport>((Interlocked.CompareExchange(ref _close, closing, null) ?? closing).Value);
    }

    private Lazy<Task<CloseReport>>? _close;

    private async Task<CloseReport> CloseOnceAsync()
    {
        _queue.Refuse(new BlockTargetException(BlockError.ShuttingDown, $"volume {_name} is closing"));
        string? problem = null;
        if (_damage.Reason is null && !_flusherGone)
        {
            try
            {
                await FlushUntilStuckAsync().ConfigureAwait(false);
            }
            catch (BlockTargetException e)
            {
                problem = e.Message;
            }
        }
        await _scrubStop.CancelAsync().ConfigureAwait(false);
        await _scrubRun.ConfigureAwait(false); // before the log closes under it
        if (_flusherGone && _queue.PendingBlocks > 0) problem ??= "the volume's actors were stopped before its writes reached the log";
        // Everything acknowledged is durable now (unless a problem says otherwise): the next open replays nothing of it.
        await _indexSaves.StopAsync(final: problem is null).ConfigureAwait(false);
        // Blocks still queued (trims and zeroes too) and what was written but never fdatasync'ed.
        var lost = problem is null ? 0 : (_queue.PendingBlocks << LogFormat.BlockShift) + Math.Max(0, _window.Tail - _window.DurableTail);
        // The destager first: the flusher's last round then asks nobody for room, and nothing talks to a stopped actor.
        if (!_destagerGone) await StopActorAsync(_destager).ConfigureAwait(false);
        if (!_flusherGone) await StopActorAsync(_flusher).ConfigureAwait(false);
        _medium.Dispose();
        _store.Dispose();
        await _backing.DisposeAsync().ConfigureAwait(false);
        if (problem is not null)
            _logger.LogError("volume {Name}: about {Lost} bytes of acknowledged writes could not be made durable when it closed: {Problem}", _name, lost, problem);
        return new CloseReport(lost, problem);
    }

    public async ValueTask DisposeAsync() => await CloseAsync().ConfigureAwait(false);

    /// <summary>
    /// A final FLUSH that waits while the log makes progress (writes reach it, the destager makes room),
    /// tries again after a refusal that may pass (a full log under the fail policy, a log write error),
    /// and gives up once nothing has moved for a while, whatever the reason.
    /// </summary>
    private async Task FlushUntilStuckAsync()
    {
        var lastProgress = DateTime.UtcNow;
        var last = (Written: -1L, Tail: -1L, Horizon: -1L);
        bool Stuck()
        {
            var now = (_queue.WrittenTicket, _window.Tail, _window.Horizon);
            if (now != last) (last, lastProgress) = (now, DateTime.UtcNow);
            return DateTime.UtcNow - lastProgress > StuckCloseTimeout;
        }
        BlockTargetException StuckError() => new(BlockError.Io, $"the log made no progress for {StuckCloseTimeout.TotalSeconds:0} s " +
            $"({_health.LogFailure?.Message ?? _health.BackingFailure ?? (_window.Used >= _window.Capacity ? "the log is full" : "no reason reported")})");
        while (true)
        {
            var flush = FlushAsync().AsTask();
            while (await Task.WhenAny(flush, Task.Delay(200)).ConfigureAwait(false) != flush)
                if (Stuck()) throw StuckError();
            try
            {
                await flush.ConfigureAwait(false);
                return;
            }
            catch (BlockTargetException e) when (e.Error is BlockError.NoSpace or BlockError.Io && _health.LogUntrusted is null && !_flusherGone)
            {
                if (Stuck()) throw;
                await Task.Delay(200).ConfigureAwait(false);
            }
        }
    }

    /// <summary>How long a closing volume waits with its log stuck behind a failing disk before it reports what it could not save.</summary>
    private static readonly TimeSpan StuckCloseTimeout = TimeSpan.FromSeconds(10);

    private async Task StopActorAsync(IActorRef actor)
    {
        try
        {
            await actor.Ask(Signals.Stop.Instance, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            _logger.LogWarning("volume {Name}: {Actor} did not stop within 30 s", _name, actor.Path.Name);
        }
    }
}

/// <summary>Switches a live cache's mode (see <see cref="WriteBackCache.SetModeAsync"/>): sent down a volume's stack.</summary>
public sealed record SetCacheMode(CacheMode Mode) : TargetMessage;

/// <summary>A point-in-time view of a cache for status output and metrics.</summary>
public sealed record CacheStatistics
{
    public long CachedBlocks { get; init; }
    public long LogBytes { get; init; }
    /// <summary>Bytes the log may use now: the configured capacity, or less while its file system is full.</summary>
    public long LogCapacity { get; init; }
    public long Generation { get; init; }
    public int RingFreeSlots { get; init; }
    public long IndexBytes { get; init; }
    /// <summary>Batch time (Unix microseconds) of the oldest point the volume can be brought back to, or 0 when there is none.</summary>
    public long OldestRestorableMicros { get; init; }
    /// <summary>Backing blocks copied aside before being overwritten, for the points still protected (copy-on-write).</summary>
    public long PreservedBlocks { get; init; }
    /// <summary>Bytes the snapshot store takes.</summary>
    public long PreservedBytes { get; init; }
    /// <summary>Kept snapshot points given up to stay within snapshot-space (policy expire-oldest).</summary>
    public long ExpiredSnapshots { get; init; }
    /// <summary>Sync points kept restorable (kept snapshots and open views of the past).</summary>
    public int ProtectedPoints { get; init; }
    public long BatchesWritten { get; init; }
    public long Syncs { get; init; }
    public long SyncPointRecords { get; init; }
    public CommitTimes CommitTimes { get; init; }
    /// <summary>
    /// FLUSHes by their time in the cache (as <see cref="CommitTimes.FlushSeconds"/> sums it): how many took at most each
    /// of <see cref="LatencyHistogram.UpperBoundsSeconds"/>, then all of them (+Inf).
    /// </summary>
    public IReadOnlyList<long> FlushLatencyBuckets { get; init; } = [];
    public long BlocksDestaged { get; init; }
    public long RingWaits { get; init; }
    public long RetentionShrinks { get; init; }
    /// <summary>Damaged log records found: by recovery at open (at most 1), plus those the scrub found after it.</summary>
    public long CorruptRecords { get; init; }
    public long TornTails { get; init; }
    /// <summary>Log bytes the persisted index covered at open, to be verified in the background (0 after a full replay).</summary>
    public long ScrubTotalBytes { get; init; }
    /// <summary>Of those, the bytes verified so far (every header and data checksum).</summary>
    public long ScrubVerifiedBytes { get; init; }
    public string? BackingFailure { get; init; }
    public string? LogFailure { get; init; }
}
