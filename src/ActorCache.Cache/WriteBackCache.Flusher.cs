using ActorCache.Blocks;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// The flusher's work (run by <see cref="FlusherActor"/>, the one writer of the log). It moves pending writes from the ring into batches in
/// log order, tells the extents' actors where their blocks landed (they point the index there and free
/// the slots), and fdatasyncs once for every FLUSH/FUA waiting (group commit).
/// </summary>
public sealed partial class WriteBackCache
{
    private IActorRef _flusherActor = ActorRefs.Nobody;
    private int _flusherWakeSent; // 1 while a Wake is on its way: a burst of writers sends one message, not one each
    private readonly AutoResetEvent _logSpaceFreed = new(false);
    private volatile bool _stopping;
    private volatile bool _flusherGone;

    private long _tail, _nextSequence, _generation, _durableSequence, _durableTail;
    private int _headRecordDone; // blocks of the head pending record already in the log (a write larger than a batch)

    private readonly byte[] _headerBlock = GC.AllocateArray<byte>(BlockSize, pinned: true);
    private static readonly byte[] EndOfLog = GC.AllocateArray<byte>(BlockSize, pinned: true);
    private readonly LogEntry[] _batchEntries = new LogEntry[LogFormat.MaxEntries];
    private readonly BatchPart[] _batchParts = new BatchPart[LogFormat.MaxEntries];
    private readonly List<ReadOnlyMemory<byte>> _gather = [];
    private readonly List<(long Ticket, TaskCompletionSource Done)> _completed = [];
    private readonly List<(long Extent, ExtentHandle? Handle, LoggedBlocks Message)> _logged = [];

    private static readonly TimeSpan CommitInterval = TimeSpan.FromSeconds(1);
    private DateTime _lastSync = DateTime.UtcNow;

    private readonly record struct BatchPart(PendingRecord Record, int From, int Count, bool Completes);

    /// <summary>Tells the flusher actor there is work (a write, a FLUSH, a full ring).</summary>
    private void WakeFlusher()
    {
        if (Interlocked.Exchange(ref _flusherWakeSent, 1) == 0) _flusherActor.Tell(Signals.Wake.Instance);
    }

    /// <summary>
    /// The flusher actor's work, run only by it: every pending write into the log, one fdatasync for
    /// the FLUSH/FUA waiters, and without any FLUSH a commit now and then (it bounds what a crash can
    /// take and lets the destager, which only moves durable history, make room).
    /// </summary>
    internal void FlushPending()
    {
        Interlocked.Exchange(ref _flusherWakeSent, 0); // writers queued after this send a new Wake
        while (WriteOneBatch()) { }
        SyncForWaiters();
        if (DateTime.UtcNow - _lastSync > CommitInterval) MakeWrittenDurable();
    }

    internal bool HasPendingWrites
    {
        get
        {
            lock (_append) return _pending.Count > 0;
        }
    }

    /// <summary>The flusher actor is gone (the cache closed, or its actor system stopped): nobody waits for it any more.</summary>
    internal void OnFlusherStopped()
    {
        _flusherGone = true;
        FailFlushWaiters(new BlockTargetException(BlockError.ShuttingDown, $"volume {_name} is closed"));
    }

    /// <summary>Every FLUSH/FUA still waiting fails with <paramref name="failure"/>.</summary>
    private void FailFlushWaiters(BlockTargetException failure)
    {
        lock (_append)
        {
            _completed.AddRange(_flushWaiters);
            _flushWaiters.Clear();
        }
        foreach (var (_, done) in _completed) done.TrySetException(failure);
        _completed.Clear();
    }

    /// <summary>Writes the next batch of pending records to the log; false when nothing is pending.</summary>
    private bool WriteOneBatch()
    {
        int parts = 0, dataBlocks = 0;
        long completedTicket = 0;
        bool syncWanted;
        lock (_append)
        {
            var first = true;
            foreach (var record in _pending)
            {
                if (parts == LogFormat.MaxEntries) break;
                var from = first ? _headRecordDone : 0;
                first = false;
                var count = record.Count - from;
                if (record.Type == LogEntryType.Data)
                {
                    // A write that fits in one batch is never split, so it lands in the log whole;
                    // only writes larger than a batch span several.
                    if (count > _options.MaxBatchBlocks - dataBlocks && dataBlocks > 0) break;
                    count = Math.Min(count, _options.MaxBatchBlocks - dataBlocks);
                    dataBlocks += count;
                }
                var completes = from + count == record.Count;
                _batchParts[parts++] = new BatchPart(record, from, count, completes);
                if (completes) completedTicket = record.Ticket;
                if (!completes) break;
            }
            syncWanted = _flushWaiters.Count > 0;
        }
        if (parts == 0) return false;

        var size = (1L + dataBlocks) << BlockShift;
        var address = LogReader.Place(_tail, size, _medium.SegmentSize);
        WaitForLogSpace(address + size);

        _gather.Clear();
        _gather.Add(_headerBlock);
        for (var p = 0; p < parts; p++)
        {
            var part = _batchParts[p];
            var crc = 0u;
            if (part.Record.Type == LogEntryType.Data)
            {
                var running = 0xFFFFFFFFu;
                for (var b = part.From; b < part.From + part.Count; b++)
                {
                    var slot = SlotOf(part.Record, b);
                    running = Crc32C.Append(running, _ring.Slot(slot));
                    _gather.Add(_ring.SlotMemory(slot));
                }
                crc = ~running;
            }
            _batchEntries[p] = new LogEntry(part.Record.Block + part.From, part.Count, part.Record.Type, crc);
        }
        // A zero block after the batch (overwritten by the next one's header): in a recycled segment
        // file, the log's end is then blank and never stale data a recovery could take for a torn write.
        if ((address + size) % _medium.SegmentSize != 0 && _medium.MayHoldStaleRecords(address / _medium.SegmentSize)) _gather.Add(EndOfLog);
        var header = new BatchHeader(_nextSequence, Interlocked.Read(ref _generation), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000,
            syncWanted ? LogFormat.SyncPointFlag : (ushort)0, _volumeId, dataBlocks, Interlocked.Read(ref _durableSequence), parts);
        LogFormat.WriteHeader(_headerBlock, header, _batchEntries.AsSpan(0, parts));
        _medium.Write(address, _gather);
        LogWorks();

        // The batch is in the log: each extent's actor points its index at it and frees the slots.
        var dataBlock = LogReader.DataAddress(address) >> BlockShift;
        var headerBlock = address >> BlockShift;
        _logged.Clear();
        for (var p = 0; p < parts; p++)
        {
            var part = _batchParts[p];
            var block = part.Record.Block + part.From;
            var end = block + part.Count;
            var isData = part.Record.Type == LogEntryType.Data;
            while (block < end)
            {
                var extent = block >> BlockIndex.ExtentBlocksShift;
                var count = (int)(Math.Min(end, (extent + 1) << BlockIndex.ExtentBlocksShift) - block);
                var logged = RentLogged();
                logged.Begin(block, count, part.Record.Type, isData ? dataBlock : headerBlock, part.Record.Ticket);
                if (isData)
                {
                    var from = (int)(block - part.Record.Block);
                    for (var i = 0; i < count; i++) logged.Slots[i] = SlotOf(part.Record, from + i);
                    dataBlock += count;
                }
                _logged.Add((extent, null, logged));
                block += count;
            }
        }
        lock (_append)
        {
            // Counted in flight under the lock, so no extent is retired before its message arrives.
            for (var i = 0; i < _logged.Count; i++) _logged[i] = _logged[i] with { Handle = TryAcquireLocked(_logged[i].Extent) };
            for (var p = 0; p < parts; p++)
            {
                var part = _batchParts[p];
                if (!part.Completes)
                {
                    _headRecordDone += part.Count;
                    continue;
                }
                _pending.Dequeue();
                _headRecordDone = 0;
                if (part.Record.Type == LogEntryType.Data)
                {
                    _pendingSlotHead = (_pendingSlotHead + part.Record.Count) % _pendingSlots.Length;
                    _pendingSlotCount -= part.Record.Count;
                }
            }
            if (completedTicket > 0) _writtenTicket = completedTicket;
        }
        Interlocked.Exchange(ref _tail, address + size);
        _nextSequence++;
        Interlocked.Increment(ref _batchesWritten);
        TellLogged();
        return true;
    }

    /// <summary>
    /// Tells each extent where its blocks of the batch landed. Their blocks are cached, so the extents
    /// have actors; only a volume whose actors are gone (closing) leaves one missing, and then the
    /// slots go straight back to the node's ring, which other volumes share.
    /// </summary>
    private void TellLogged()
    {
        foreach (var (extent, handle, logged) in _logged)
        {
            try
            {
                (handle ?? AcquireExtent(extent)).Actor.Tell(logged, ActorRefs.NoSender);
            }
            catch (Exception e) when (e is BlockTargetException or AskTimeoutException)
            {
                if (logged.Type == LogEntryType.Data)
                    for (var i = 0; i < logged.Count; i++) _ring.Release(logged.Slots[i]);
            }
        }
    }

    private int SlotOf(PendingRecord record, int block) => _pendingSlots[(record.FirstSlot + block) % _pendingSlots.Length];

    /// <summary>Blocks while the log is at capacity; the destager frees space (shrinking retention if it must).</summary>
    private void WaitForLogSpace(long end)
    {
        var warned = false;
        while (end - Interlocked.Read(ref _horizon) > _options.LogCapacity)
        {
            if (!warned)
            {
                _logger.LogWarning("volume {Name}: the log is full ({Capacity} bytes); writes wait for destaging", _name, _options.LogCapacity);
                warned = true;
            }
            MakeWrittenDurable(); // the destager only moves durable history
            WakeDestager();
            _logSpaceFreed.WaitOne(TimeSpan.FromMilliseconds(100));
            if (_stopping) throw new BlockTargetException(BlockError.ShuttingDown, $"volume {_name} is stopping with a full log");
            if (_backingFailure is { } failure)
                throw new BlockTargetException(BlockError.NoSpace, $"the log is full and cannot be destaged: {failure}");
        }
    }

    /// <summary>One fdatasync for every FLUSH/FUA whose writes are now in the log.</summary>
    private void SyncForWaiters()
    {
        long target;
        lock (_append)
        {
            if (_flushWaiters.Count == 0) return;
            target = _writtenTicket;
        }
        if (Interlocked.Read(ref _durableTicket) < target && MakeWrittenDurable())
            Interlocked.Increment(ref _generation); // every completed FLUSH closes a generation
        lock (_append)
        {
            var durable = Interlocked.Read(ref _durableTicket);
            for (var i = _flushWaiters.Count - 1; i >= 0; i--)
            {
                if (_flushWaiters[i].Ticket > durable) continue;
                _completed.Add(_flushWaiters[i]);
                _flushWaiters.RemoveAt(i);
            }
        }
        foreach (var (_, done) in _completed) done.TrySetResult();
        _completed.Clear();
    }

    /// <summary>fdatasyncs everything the flusher has written; false when there was nothing new.</summary>
    private bool MakeWrittenDurable()
    {
        long target;
        lock (_append) target = _writtenTicket;
        var tail = Interlocked.Read(ref _tail);
        if (Interlocked.Read(ref _durableTail) == tail && Interlocked.Read(ref _durableTicket) >= target) return false;
        _medium.Sync();
        LogWorks();
        _lastSync = DateTime.UtcNow;
        Interlocked.Exchange(ref _durableSequence, _nextSequence - 1);
        Interlocked.Exchange(ref _durableTail, tail);
        Interlocked.Exchange(ref _durableTicket, target);
        Interlocked.Increment(ref _syncs);
        WakeDestagerIfUrgent();
        return true;
    }

    /// <summary>
    /// After a log sync the destager may have more durable history to move, but it is woken only when
    /// that is urgent (the log is past its retention cap, or a drain waits): history that merely came
    /// due waits for the destager's periodic tick. A wake-up per FLUSH cost the destager's thread a
    /// burst of spinning each time, a tenth of the node's CPU under a FLUSH every 32 writes.
    /// </summary>
    private void WakeDestagerIfUrgent()
    {
        var backlog = Interlocked.Read(ref _tail) - Interlocked.Read(ref _horizon);
        if (backlog > _options.RetentionCapBytes || Interlocked.Read(ref _drainTo) > Interlocked.Read(ref _horizon))
            WakeDestager();
    }

    /// <summary>A log write or sync just succeeded: any earlier failure is over.</summary>
    private void LogWorks()
    {
        if (_logFailure is null) return;
        _logger.LogInformation("volume {Name}: the log is writable again", _name);
        _logFailure = null;
    }

    internal void OnLogFailure(BlockTargetException e)
    {
        var first = _logFailure is null;
        _logFailure = e;
        if (first)
            _logger.LogError("volume {Name}: log write failed: {Message}. Acknowledged writes stay in memory; {Policy}", _name, e.Message,
                e.Error == BlockError.NoSpace && _options.LogFullPolicy == LogFullPolicy.Wait
                    ? "writers wait until space returns"
                    : "FLUSH/FUA fail until the log is writable again");
        if (e.Error == BlockError.NoSpace && _options.LogFullPolicy == LogFullPolicy.Wait && !_stopping) return;
        FailFlushWaiters(new BlockTargetException(e.Error, $"volume {_name}: cannot make writes durable: {e.Message}"));
    }
}
