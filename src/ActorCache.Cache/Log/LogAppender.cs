using ActorCache.Blocks;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>What an attempt to append to the log came to.</summary>
internal enum AppendOutcome
{
    Nothing,
    Written,
    /// <summary>The next batch would take the log past its capacity: the destager must move the horizon first.</summary>
    LogFull,
    /// <summary>The file system ran out of space before the log reached its capacity: the log is capped where it is.</summary>
    FileSystemFull,
}

/// <summary>
/// The writing end of a volume's log (DESIGN §3), owned by its flusher actor: only it moves the tail,
/// numbers batches and generations, marks sync points and fdatasyncs. It turns queued records into
/// batches (a header block and the records' ring slots, one gathered pwritev), tells the append queue
/// where they landed, hands each batch to the log's subscribers, and makes the log durable for the
/// durability barrier: once per group of FLUSH/FUA waiters, and on its own every commit interval.
/// </summary>
/// <remarks>
/// Generations are exact: a batch is a sync point (flagged in its header, closing its generation) when
/// it completes the write a FLUSH or FUA waits for. A FLUSH that arrives after its writes were batched
/// gets a sync-point record (a header without entries) before the fdatasync, so every completed FLUSH
/// closes a generation that the log records and recovery finds again.
/// </remarks>
internal sealed class LogAppender(string name, ILogMedium medium, AppendQueue queue, RingBuffer ring, RingLine line, DurabilityBarrier barrier,
    LogWindow window, CacheHealth health, CacheOptions options, ILogger logger, Guid volumeId, RecoveryResult recovery)
{
    private const int BlockSize = LogFormat.BlockSize;
    private const int BlockShift = LogFormat.BlockShift;
    private static readonly byte[] EndOfLog = GC.AllocateArray<byte>(BlockSize, pinned: true);

    private long _nextSequence = recovery.NextSequence;
    private long _generation = recovery.Generation;
    private long _durableSequence = recovery.NextSequence - 1;
    private long _lastTimeMicros = recovery.LastTimeMicros;
    private long _syncPointTicket;   // every ticket up to here is covered by a sync point already written
    private long _syncPointSequence; // the batch of the newest sync point written
    private DateTime _lastSync = DateTime.UtcNow;
    private readonly RepeatedLog _fileSystemFullWarning = new(logger, LogLevel.Warning);
    private DateTime _capacityCappedUntil; // while the file system was full, the capacity stays at what the log held

    private readonly byte[] _headerBlock = GC.AllocateArray<byte>(BlockSize, pinned: true);
    private readonly LogEntry[] _entries = new LogEntry[LogFormat.MaxEntries];
    private readonly BatchPart[] _parts = new BatchPart[LogFormat.MaxEntries];
    private readonly List<ReadOnlyMemory<byte>> _gather = [];
    private readonly List<int> _slots = [];
    private ILogSubscriber[] _subscribers = [];
    private readonly Stack<LoggedBatch> _batchPool = new();
    private Action<LoggedBatch>? _returnBatch; // made once: a method group converted per batch would allocate

    /// <summary>The generation the next batch belongs to (its header's); closed ones are the barrier's to report.</summary>
    public long OpenGeneration => Volatile.Read(ref _generation);

    /// <summary>After <see cref="AppendOutcome.LogFull"/> or <see cref="AppendOutcome.FileSystemFull"/>: where the horizon must be for the batch to fit.</summary>
    public long RoomNeeded { get; private set; }

    /// <summary>Something is written that no fdatasync covers yet.</summary>
    public bool HasUnsyncedWrites => window.Tail != window.DurableTail;

    /// <summary>Adds a subscriber for every batch written from now on; disposing the result removes it.</summary>
    public IDisposable Subscribe(ILogSubscriber subscriber)
    {
        ImmutableSwap(list => [.. list, subscriber]);
        return new Subscription(() => ImmutableSwap(list => [.. list.Where(s => s != subscriber)]));
    }

    private void ImmutableSwap(Func<ILogSubscriber[], ILogSubscriber[]> change)
    {
        while (true)
        {
            var current = Volatile.Read(ref _subscribers);
            if (Interlocked.CompareExchange(ref _subscribers, change(current), current) == current) return;
        }
    }

    /// <summary>Writes the next batch of queued records; <see cref="AppendOutcome.LogFull"/> when the log has no room for it.</summary>
    public AppendOutcome WriteBatch()
    {
        var partCount = queue.PeekBatch(_parts, options.MaxBatchBlocks, out var dataBlocks, out var completedTicket);
        if (partCount == 0) return AppendOutcome.Nothing;
        var parts = _parts.AsSpan(0, partCount);
        // A sync point when the batch completes a write some FLUSH or FUA waits for.
        var syncPoint = completedTicket > _syncPointTicket && barrier.HasWaiterIn(_syncPointTicket, completedTicket);

        _gather.Clear();
        _slots.Clear();
        _gather.Add(_headerBlock);
        for (var p = 0; p < parts.Length; p++)
        {
            var part = parts[p];
            var crc = 0u;
            if (part.Record.Type == LogEntryType.Data)
            {
                var running = 0xFFFFFFFFu;
                for (var b = part.From; b < part.From + part.Count; b++)
                {
                    var slot = queue.SlotOf(part.Record, b);
                    running = Crc32C.Append(running, ring.Slot(slot));
                    _gather.Add(ring.SlotMemory(slot));
                    _slots.Add(slot);
                }
                crc = ~running;
            }
            _entries[p] = new LogEntry(part.Record.Block + part.From, part.Count, part.Record.Type, crc);
        }
        var outcome = Append(dataBlocks, _entries.AsSpan(0, parts.Length), syncPoint, syncPoint ? completedTicket : 0, out var address, out var header);
        if (outcome != AppendOutcome.Written) return outcome;

        // In the log now: the queue points the blocks there; the slots go to the subscribers, or back to the ring.
        queue.CompleteBatch(parts, LogReader.DataAddress(address) >> BlockShift, address >> BlockShift);
        Publish(address, header, completedTicket);
        return AppendOutcome.Written;
    }

    /// <summary>
    /// Some FLUSH or FUA waits for writes that are in the log already, in batches that were not sync
    /// points when they were written: a sync-point record (a header without entries) closes their generation.
    /// </summary>
    public bool SyncPointRecordWanted => barrier.HasWaiterIn(_syncPointTicket, queue.WrittenTicket);

    public AppendOutcome WriteSyncPointRecord()
    {
        var covered = queue.WrittenTicket;
        _gather.Clear();
        _slots.Clear();
        _gather.Add(_headerBlock);
        var outcome = Append(0, [], syncPoint: true, covered, out var address, out var header);
        if (outcome != AppendOutcome.Written) return outcome;
        health.CountSyncPointRecord();
        Publish(address, header, covered); // a replica's log has the same sync points
        return outcome;
    }

    /// <summary>Writes header + gathered data at the tail (or the next segment); the caller has filled <see cref="_gather"/> after the header.</summary>
    private AppendOutcome Append(int dataBlocks, ReadOnlySpan<LogEntry> entries, bool syncPoint, long syncPointTicket,
        out long address, out BatchHeader header)
    {
        var size = (1L + dataBlocks) << BlockShift;
        var tail = Math.Max(window.Tail, window.Sealed);
        address = LogReader.Place(tail, size, medium.SegmentSize);
        header = default;
        // Moving on to the next segment: nothing is written in the rest of this one any more, so once
        // destaged it can be released (recovery looks for the next batch at the next segment start).
        if (address != tail) window.Seal(address);
        if (address + size - window.Horizon > window.Capacity)
        {
            RoomNeeded = address + size - window.Capacity;
            return AppendOutcome.LogFull;
        }

        // A zero block after the batch (overwritten by the next one's header): in a recycled segment
        // file, the log's end is then blank and never stale data a recovery could take for a torn write.
        if ((address + size) % medium.SegmentSize != 0 && medium.MayHoldStaleRecords(address / medium.SegmentSize)) _gather.Add(EndOfLog);
        // Batch times never go backwards, so "the newest sync point at or before a time" is well defined.
        _lastTimeMicros = Math.Max(_lastTimeMicros, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000);
        header = new BatchHeader(_nextSequence, _generation, _lastTimeMicros, syncPoint ? LogFormat.SyncPointFlag : (ushort)0, volumeId,
            dataBlocks, _durableSequence, entries.Length);
        LogFormat.WriteHeader(_headerBlock, header, entries);
        WipeFailedHeader();
        try
        {
            medium.Write(address, _gather);
        }
        catch (Exception e)
        {
            // Part of the batch, its header included, may be on disk: wiped before anything else is written,
            // or recovery would find it where the batch was meant to go and stop there.
            _failedWriteAt = address;
            if (e is not BlockTargetException { Error: BlockError.NoSpace }) throw;
            // The file system is full before the log is: the log is capped at the segment files it has,
            // so retention shrinks, and the oldest segment is destaged and freed to be reused in place.
            var horizon = window.Horizon;
            var held = (medium.Segments.Count + medium.SpareCount) * medium.SegmentSize;
            window.SetCapacity(held);
            _capacityCappedUntil = DateTime.UtcNow + CapacityRetryInterval;
            RoomNeeded = (horizon / medium.SegmentSize + 1) * medium.SegmentSize;
            _fileSystemFullWarning.Log($"volume {name}: the log's file system is full ({e.Message}); the log is capped at the {held} bytes " +
                                       "its segment files hold and the oldest is destaged to be reused");
            return AppendOutcome.FileSystemFull;
        }
        _failedWriteAt = -1;
        window.SetTail(address + size);
        _nextSequence++;
        health.CountBatch();
        if (syncPoint)
        {
            _syncPointTicket = syncPointTicket;
            _syncPointSequence = header.Sequence;
            barrier.SyncPointWritten(syncPointTicket, new SyncPoint(_generation, _lastTimeMicros, header.Sequence, address + size));
            _generation++;
        }
        return AppendOutcome.Written;
    }

    /// <summary>How long the log stays capped at what it held when its file system filled, before it tries to grow again.</summary>
    private static readonly TimeSpan CapacityRetryInterval = TimeSpan.FromSeconds(10);

    /// <summary>A capped log tries its configured capacity again now and then: the file system may have room again.</summary>
    public void RestoreCapacityIfDue()
    {
        if (window.Capacity < options.LogCapacity && DateTime.UtcNow >= _capacityCappedUntil) window.SetCapacity(options.LogCapacity);
    }

    private long _failedWriteAt = -1;

    /// <summary>
    /// After a failed write, the header it may have left is wiped (and that made durable) before the next
    /// write: a batch retried elsewhere (a larger one, at the next segment) must not leave a valid header
    /// of its sequence number behind, which recovery would take for a torn tail and cut flushed data off.
    /// </summary>
    private void WipeFailedHeader()
    {
        if (_failedWriteAt < 0) return;
        try
        {
            medium.Discard(_failedWriteAt, BlockSize); // throws while the medium still fails: the flusher retries later
        }
        catch (BlockTargetException e) when (e.InnerException is LogSyncFailure)
        {
            // The wipe ends with an fdatasync of the segment. That failing took the one report of a write-back error that may
            // cover batches written before the failed one: the log is not trusted any more, as after Sync's. (A wipe that fails
            // before, in its hole punch or zeroes, is retried like the write: the disk may come back.)
            health.LogUntrusted ??= $"wiping a failed log write failed ({e.Message}); writes since the last good fdatasync may be lost, " +
                                    "so the volume takes no more writes until it is opened again (restart the node)";
            throw;
        }
        _failedWriteAt = -1;
    }

    /// <summary>Hands the batch just written to every subscriber (with its slots), or gives the slots back to the ring.</summary>
    private void Publish(long address, in BatchHeader header, long completedTicket)
    {
        var subscribers = Volatile.Read(ref _subscribers);
        if (subscribers.Length == 0)
        {
            // Released last block first, the slots go back on the free stack so the next claim takes them
            // in ascending order: a staged write then receives into long runs of neighbouring slots.
            ring.ReleaseAll(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_slots), line);
            return;
        }
        LoggedBatch? batch;
        lock (_batchPool) _batchPool.TryPop(out batch);
        batch ??= new LoggedBatch();
        batch.Begin(ring, line, address, header, _headerBlock, _entries.AsSpan(0, header.EntryCount), completedTicket, subscribers.Length, _returnBatch ??= ReturnBatch);
        for (var i = 0; i < _slots.Count; i++) batch.Slots[i] = _slots[i];
        foreach (var subscriber in subscribers)
        {
            try
            {
                subscriber.OnBatch(batch);
            }
            catch (Exception e)
            {
                // A subscriber's fault must not keep the ring's slots (shared by every volume) or fail the log.
                SubscriberFailures.Log($"volume {name}: a log subscriber ({subscriber.GetType().Name}) failed on batch {header.Sequence}: {e.Message}");
                batch.Release();
            }
        }
    }

    private RepeatedLog? _subscriberFailures;
    private RepeatedLog SubscriberFailures => _subscriberFailures ??= new RepeatedLog(logger, LogLevel.Error);

    private void ReturnBatch(LoggedBatch batch)
    {
        lock (_batchPool) _batchPool.Push(batch);
    }

    /// <summary>Group commit: one fdatasync for every FLUSH/FUA whose sync point is written but not yet durable here. True when it synced.</summary>
    public bool SyncForWaiters()
    {
        if (!barrier.HasWaiters || _durableSequence >= _syncPointSequence) return false;
        Sync();
        medium.PrepareAhead(window.Tail);
        return true;
    }

    /// <summary>Without any FLUSH, a commit now and then bounds what a crash can take and lets the destager (which moves only durable history) make room.</summary>
    public void CommitIfDue()
    {
        if (HasUnsyncedWrites && DateTime.UtcNow - _lastSync > options.CommitInterval) Sync();
    }

    /// <summary>How long the last fdatasync took (Stopwatch ticks): the waiters it completes may run their continuations on this thread after it.</summary>
    public long LastSyncTicks { get; private set; }

    /// <summary>fdatasyncs everything written so far; the local log is then durable through the written ticket.</summary>
    public void Sync()
    {
        // Once an fdatasync failed, none is trusted again (see below): a later one returns 0 for the pages whose write-back
        // failed, and closing the sync points it covers would acknowledge a FLUSH whose data is gone. The periodic commit and
        // a full log's sync come here too, not only a FLUSH's.
        if (health.LogUntrusted is { } untrusted) BlockThrow.Error(BlockError.Io, $"the log is not synced any more: {untrusted}");
        var tail = window.Tail;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            medium.Sync();
            LastSyncTicks = System.Diagnostics.Stopwatch.GetTimestamp() - started;
        }
        catch (BlockTargetException e)
        {
            // Whatever the error, ENOSPC included (thin provisioning, NFS): a failed fdatasync means write-back failed, the pages
            // are clean again and their data may never reach the disk, and Linux reports it once, so a retry would return 0
            // and acknowledge a FLUSH whose data is gone. Not a full log to wait out: the log is not trusted any more.
            health.LogUntrusted ??= $"an fdatasync of the log failed ({e.Message}); writes since the last good one may be lost, " +
                                    "so the volume takes no more writes until it is opened again (restart the node)";
            throw;
        }
        _lastSync = DateTime.UtcNow;
        _durableSequence = _nextSequence - 1;
        window.SetDurableTail(tail);
        health.CountSync();
        barrier.Local.Advance(_durableSequence);
    }
}

/// <summary>Removes a subscription when disposed.</summary>
internal sealed class Subscription(Action remove) : IDisposable
{
    private Action? _remove = remove;

    public void Dispose() => Interlocked.Exchange(ref _remove, null)?.Invoke();
}
