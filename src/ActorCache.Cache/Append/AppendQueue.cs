using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Log order, and the one writer of the live <see cref="BlockIndex"/> (DESIGN §3: the index is updated
/// strictly in log order). Writers take its lock to get their tickets (their place in log order),
/// queue their records for the flusher and point their blocks at the ring in one step; the flusher
/// takes it to move written records out and point their blocks at the log; the destager to point
/// destaged blocks at the backing. Because every change goes through this one lock, the runtime index
/// is always the one recovery rebuilds from the log.
/// </summary>
/// <remarks>
/// The lock is held for a few index stores per block. Records hold slot numbers, never data: a record's
/// slots sit in <see cref="_slots"/>, a ring of its own sized so every slot of the node's ring fits.
/// </remarks>
internal sealed class AppendQueue
{
    private readonly Lock _gate = new();
    private readonly BlockIndex _index;
    private readonly Queue<PendingRecord> _pending = new(4096);
    private readonly int[] _slots;
    private int _slotHead, _slotCount;
    private int _headRecordDone; // blocks of the head record already in the log (a write larger than a batch)
    private long _appended, _written;
    private long _pendingDataBlocks;
    private BlockTargetException? _closed, _refused;
    private IndexCapture? _capture; // a capture waiting for the batch that logs its last queued write
    private long _lastHeaderBlock = -1, _lastEndBlock; // the newest batch whose blocks the index points at

    /// <param name="lastBatch">The newest batch recovery replayed (address, end), or address -1: what an index captured before any new batch covers.</param>
    public AppendQueue(BlockIndex index, int ringSlots, (long Address, long End) lastBatch = default)
    {
        _index = index;
        if (lastBatch.End > 0) (_lastHeaderBlock, _lastEndBlock) = (lastBatch.Address >> LogFormat.BlockShift, lastBatch.End >> LogFormat.BlockShift);
        // Parts of a large write are released as their batches land, while later writes queue behind it.
        _slots = new int[ringSlots + 16384];
    }

    /// <summary>The live index; only this queue changes it.</summary>
    public BlockIndex Index => _index;

    /// <summary>The newest ticket handed out: a FLUSH arriving now covers every write up to it.</summary>
    public long AppendedTicket
    {
        get
        {
            lock (_gate) return _appended;
        }
    }

    /// <summary>Every record up to this ticket is in the log (not necessarily durable).</summary>
    public long WrittenTicket => Volatile.Read(ref _written);

    public bool HasPending
    {
        get
        {
            lock (_gate) return _pending.Count > 0;
        }
    }

    /// <summary>Data blocks queued and not yet in the log.</summary>
    public long PendingDataBlocks
    {
        get
        {
            lock (_gate) return _pendingDataBlocks;
        }
    }

    /// <summary>
    /// Enough is queued for a batch of its own: <paramref name="blocks"/> data blocks, or as many records
    /// (trims and zeroes carry no data but still take memory until they are logged).
    /// </summary>
    public bool HoldsBatch(int blocks) =>
        // Read without the lock (every writer asks after each write): a stale answer only rings a little early or late.
        Volatile.Read(ref _pendingDataBlocks) >= blocks || _pending.Count >= blocks;

    /// <summary>Data blocks queued and not yet in the log, read without the lock (a moment old at worst): for back-pressure checks on every write.</summary>
    public long PendingDataBlocksNow => Volatile.Read(ref _pendingDataBlocks);

    /// <summary>Blocks queued and not yet in the log, trims and zeroes included (what a stop that cannot reach the log would lose).</summary>
    public long PendingBlocks
    {
        get
        {
            lock (_gate)
            {
                long blocks = -_headRecordDone;
                foreach (var record in _pending) blocks += record.Count;
                return Math.Max(0, blocks);
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="queue"/> under the lock (writers only): the callback reads what it must merge
    /// and calls <see cref="QueueLocked"/> and <see cref="PointLocked"/> for each record of the request,
    /// so a request's records are never split by a crash and log order is the order of the lock.
    /// </summary>
    public long Append<TState>(ref TState state, AppendAction<TState> queue) where TState : allows ref struct
    {
        lock (_gate)
        {
            if ((_closed ?? _refused) is { } closed) throw closed;
            if (_paused is not null) return Paused;
            if (!_writeBack) return NotWriteBack;
            return queue(this, ref state);
        }
    }

    /// <summary>What <see cref="Append{TState}"/> returns while writes are paused: wait for <see cref="Resumed"/>, then append again.</summary>
    public const long Paused = -1;

    /// <summary>What <see cref="Append{TState}"/> returns when the volume has left write-back: the write goes to the backing instead.</summary>
    public const long NotWriteBack = -2;

    private bool _writeBack = true;

    /// <summary>
    /// Whether writes are taken into the cache. Decided under the lock, so a write checks it in the same
    /// step it queues in: no write can slip into the cache after a switch to write-through has drained it.
    /// </summary>
    public bool WriteBack
    {
        get
        {
            lock (_gate) return _writeBack;
        }
        set
        {
            lock (_gate) _writeBack = value;
        }
    }

    private TaskCompletionSource? _paused;
    private PauseHolder _pausedBy;

    /// <summary>Completes when writes are accepted again (at once when they are not paused).</summary>
    public Task Resumed
    {
        get
        {
            lock (_gate) return _paused?.Task ?? Task.CompletedTask;
        }
    }

    /// <summary>
    /// Holds new writes back (they wait, claimed slots and all) until every holder has called <see cref="Resume"/>: a barrier
    /// across volumes, so a snapshot of several holds every write acknowledged before it and none after, and a mode switch while
    /// it drains. Each holds its own pause: one that ends never ends the other's (a snapshot failing during a switch's drain let
    /// writes into the cache it was leaving).
    /// </summary>
    public void Pause(PauseHolder holder)
    {
        lock (_gate)
        {
            _pausedBy |= holder;
            _paused ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public void Resume(PauseHolder holder)
    {
        TaskCompletionSource? paused = null;
        lock (_gate)
        {
            _pausedBy &= ~holder;
            if (_pausedBy == 0) (paused, _paused) = (_paused, null);
        }
        paused?.TrySetResult();
    }

    /// <summary>Gives a record the next ticket and queues it for the flusher. Only inside <see cref="Append{TState}"/>.</summary>
    /// <param name="continues">The record is not the first of its request (a trim with partial ends is up to three): a batch takes the request whole when it can.</param>
    public long QueueLocked(long first, int count, LogEntryType type, ReadOnlySpan<int> slots, bool continues = false)
    {
        var ticket = ++_appended;
        if (type == LogEntryType.Data) _pendingDataBlocks += count;
        _pending.Enqueue(new PendingRecord(first, count, type, ticket, (_slotHead + _slotCount) % _slots.Length, continues));
        foreach (var slot in slots) _slots[(_slotHead + _slotCount++) % _slots.Length] = slot;
        return ticket;
    }

    /// <summary>Points a block at its new version (a ring slot, an unlogged trim/zero). Only inside <see cref="Append{TState}"/>.</summary>
    public void PointLocked(long block, ulong entry) => _index.Set(block, entry);

    /// <summary>
    /// New writes fail from now on with <paramref name="reason"/> (the volume is closing); those queued already still reach the
    /// log, and the index can still be captured. Before, a write accepted after the close's last FLUSH was acknowledged and never
    /// logged, its ring slots never given back.
    /// </summary>
    public void Refuse(BlockTargetException reason)
    {
        lock (_gate) _refused ??= reason;
    }

    /// <summary>Writes fail from now on with <paramref name="reason"/> (the volume closed, its flusher is gone).</summary>
    public void Close(BlockTargetException reason)
    {
        IndexCapture? capture;
        lock (_gate)
        {
            _closed ??= reason;
            (capture, _capture) = (_capture, null);
        }
        capture?.Completed.TrySetCanceled(); // no batch will come to complete it
    }

    /// <summary>
    /// Freezes the index at this point in log order for persisting (see <see cref="IndexCapture"/>); it
    /// completes at once when nothing is queued, else with the batch that logs the newest write queued
    /// now. Null while another capture is under way or the queue is closed.
    /// </summary>
    public IndexCapture? BeginCapture()
    {
        lock (_gate)
        {
            if (_capture is not null || _closed is not null) return null;
            var capture = new IndexCapture(_index.Capture(), _appended, _index.Blocks);
            if (_pending.Count == 0) capture.Completed.TrySetResult((_lastHeaderBlock, _lastEndBlock));
            else _capture = capture;
            return capture;
        }
    }

    /// <summary>
    /// The flusher's next batch: records (or the rest of one) in log order, up to <paramref name="maxDataBlocks"/>
    /// data blocks and one header's worth of entries. A record that fits in a batch is never split, so
    /// it lands in the log whole. Nothing leaves the queue until <see cref="CompleteBatch"/>.
    /// </summary>
    public int PeekBatch(Span<BatchPart> parts, int maxDataBlocks, out int dataBlocks, out long completedTicket)
    {
        var count = 0;
        dataBlocks = 0;
        completedTicket = 0;
        lock (_gate)
        {
            var first = true;
            foreach (var record in _pending)
            {
                var full = count == parts.Length;
                var from = first ? _headRecordDone : 0;
                first = false;
                var blocks = record.Count - from;
                if (!full && record.Type == LogEntryType.Data && blocks > maxDataBlocks - dataBlocks && dataBlocks > 0) full = true;
                if (full)
                {
                    // A request's records land in one batch (a crash never splits it) unless it cannot fit in any.
                    if (record.Continues) count = DropOpenRequest(parts, count);
                    break;
                }
                if (record.Type == LogEntryType.Data)
                {
                    blocks = Math.Min(blocks, maxDataBlocks - dataBlocks);
                    dataBlocks += blocks;
                }
                var completes = from + blocks == record.Count;
                parts[count++] = new BatchPart(record, from, blocks, completes);
                if (!completes) break;
            }
            dataBlocks = 0;
            completedTicket = 0;
            for (var i = 0; i < count; i++)
            {
                if (parts[i].Record.Type == LogEntryType.Data) dataBlocks += parts[i].Count;
                if (parts[i].Completes) completedTicket = parts[i].Record.Ticket;
            }
        }
        return count;
    }

    /// <summary>Takes the last request's records (those of an unfinished one) back out of a batch, unless they are all it holds.</summary>
    private static int DropOpenRequest(Span<BatchPart> parts, int count)
    {
        var start = count;
        while (start > 0 && parts[start - 1].Record.Continues) start--;
        start--; // the request's first record
        return start > 0 ? start : count;
    }

    /// <summary>The ring slot of block <paramref name="block"/> of a queued record (stable until the record completes).</summary>
    public int SlotOf(in PendingRecord record, int block) => _slots[(record.FirstSlot + block) % _slots.Length];

    /// <summary>
    /// The batch is in the log: its blocks point at their log addresses (unless a newer write came
    /// meanwhile; the log copy is then history) and its completed records leave the queue. The caller
    /// lets go of the data slots afterwards.
    /// </summary>
    public void CompleteBatch(ReadOnlySpan<BatchPart> parts, long dataBlock, long headerBlock)
    {
        lock (_gate)
        {
            var completed = 0L;
            foreach (var part in parts)
            {
                var record = part.Record;
                for (var i = 0; i < part.Count; i++)
                {
                    var block = record.Block + part.From + i;
                    var logged = record.Type == LogEntryType.Data
                        ? BlockIndex.Encode(BlockLocation.Log, dataBlock++)
                        : BlockIndex.Encode(BlockLocation.Zero, headerBlock);
                    _index.Replace(block, record.Type == LogEntryType.Data
                        ? BlockIndex.Encode(BlockLocation.Ring, SlotOf(record, part.From + i))
                        : BlockIndex.UnloggedZero(record.Ticket), logged);
                    _capture?.Patches.Add((block, logged)); // even when a newer write won: the log holds this version now
                }
                if (record.Type == LogEntryType.Data) _pendingDataBlocks -= part.Count;
                if (!part.Completes)
                {
                    _headRecordDone += part.Count;
                    continue;
                }
                _pending.Dequeue();
                _headRecordDone = 0;
                if (record.Type == LogEntryType.Data)
                {
                    _slotHead = (_slotHead + record.Count) % _slots.Length;
                    _slotCount -= record.Count;
                }
                completed = record.Ticket;
            }
            if (completed > 0) Volatile.Write(ref _written, completed);
            (_lastHeaderBlock, _lastEndBlock) = (headerBlock, dataBlock);
            if (_capture is { } capture && _written >= capture.LastTicket)
            {
                _capture = null;
                capture.Completed.TrySetResult((headerBlock, dataBlock));
            }
        }
    }

    /// <summary>Destaged blocks read from the backing now, unless a newer version arrived meanwhile. Returns how many moved.</summary>
    public int PublishDestaged(ReadOnlySpan<DestageBlock> blocks)
    {
        var moved = 0;
        // In slices, so writers never wait long behind a 64 MiB destage step.
        for (var start = 0; start < blocks.Length; start += 1024)
        {
            lock (_gate)
            {
                foreach (var block in blocks.Slice(start, Math.Min(1024, blocks.Length - start)))
                    if (_index.Replace(block.Block, block.Entry, 0)) moved++;
            }
        }
        return moved;
    }

    /// <summary>The volume grew online: the index covers <paramref name="blocks"/> blocks, changed under the lock like every index change.</summary>
    public void Grow(long blocks)
    {
        lock (_gate) _index.Grow(blocks);
    }

    /// <summary>Drops the index pages of extents that are clean and were left alone for <paramref name="idleSweeps"/> sweeps.</summary>
    public int DropIdlePages(int idleSweeps)
    {
        lock (_gate) return _index.DropIdlePages(idleSweeps);
    }
}

/// <summary>What a writer does under the queue's lock (see <see cref="AppendQueue.Append{TState}"/>); returns the request's last ticket.</summary>
internal delegate long AppendAction<TState>(AppendQueue queue, ref TState state) where TState : allows ref struct;

/// <summary>
/// One request's record waiting for the log: a run of blocks, their type, their ticket, where their slots
/// start in the queue's slot ring, and whether it continues the request of the record before it.
/// </summary>
internal readonly record struct PendingRecord(long Block, int Count, LogEntryType Type, long Ticket, int FirstSlot, bool Continues = false);

/// <summary>The part of a record that goes into one batch: blocks [From, From + Count) of it; <see cref="Completes"/> when it is the record's last part.</summary>
internal readonly record struct BatchPart(PendingRecord Record, int From, int Count, bool Completes);

/// <summary>Who holds an <see cref="AppendQueue"/>'s writes back.</summary>
[Flags]
internal enum PauseHolder
{
    /// <summary>A snapshot's barrier across volumes.</summary>
    Barrier = 1,
    /// <summary>A switch out of (or into) write-back while it drains.</summary>
    ModeSwitch = 2,
}
