using ActorCache.Blocks;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>The newest version of one block in a destage step: a log block, or a zeroed (possibly deallocated) block.</summary>
internal readonly record struct DestageBlock(long Block, ulong Entry, bool Deallocate);

/// <summary>
/// One destage step: the blocks to write (block order), the blocks whose backing content a protected
/// point still reads and that must be preserved first (block order), and where the horizon goes once all
/// of them are on the backing. <see cref="Sequence"/> is the next batch's: the step's last batch is one less.
/// <see cref="PassedSyncPoint"/>: the newest batch of the step before its last that closes a generation (its point no longer
/// reads true once the step writes the backing), 0 for none.
/// </summary>
internal sealed record DestagePlan(List<DestageBlock> Blocks, List<long> Preserve, long Address, long Sequence, long Generation, long PassedSyncPoint = 0)
{
    public long LastSequence => Sequence - 1;
}

/// <summary>
/// Decides what history leaves the log (DESIGN §3 "Destager"), owned by the destager actor: it alone
/// moves the horizon. History is due once it is older than the retention time, when the log passes its
/// retention cap (retention shrinks, with a warning), when the flusher needs room, or when a drain asks
/// for everything. Only durable history moves, a step (64 MiB of history) at a time, through the
/// <see cref="LogWalker"/>; the backing therefore always holds the volume as of the horizon's generation.
/// </summary>
internal sealed class DestagePlanner(string name, ILogMedium medium, LogWindow window, LogHistory history, CacheHealth health,
    CacheOptions options, ILogger logger, ILogDirectory directory, Checkpoint checkpoint, ProtectedPoints protectedPoints, SnapshotStore store,
    LogScrub scrub)
{
    private const int StepBlocks = 16384; // 64 MiB of history per step

    private readonly LogWalker _walker = new(medium, checkpoint.VolumeId);
    private long _horizonSequence = checkpoint.Sequence, _horizonGeneration = checkpoint.Generation;
    // The first batch whose preceding sync point still reads true: past the horizon once a step has begun writing the backing.
    private long _restorableFrom = checkpoint.FirstRestorable;
    private long _drainTo, _roomTo;
    // The end of the furthest step whose blocks the index was told are on the backing, though the step did not complete (its
    // checkpoint failed): the next step goes at least that far, whatever is due, or it could write an older version of such a
    // block back over the backing while the index serves the backing. (A step that fails before that point may be cut short:
    // the index still serves its blocks from the log.)
    private long _publishedTo;
    private bool _shrinkReported;
    private DateTime _nextPacedStep;
    private long _notDueAddress = -1, _notDueTime; // the batch at the horizon, last read and not due yet

    /// <summary>The flusher needs the horizon at <paramref name="horizon"/> at least: history before it is due whatever its age.</summary>
    public void RequestRoom(long horizon) => _roomTo = Math.Max(_roomTo, horizon);

    public bool RoomWanted => _roomTo > window.Horizon;

    /// <summary>Everything durable up to <paramref name="target"/> goes to the backing, regardless of retention (a mode switch leaving write-back).</summary>
    public void RequestDrain(long target) => _drainTo = Math.Max(_drainTo, target);

    /// <summary>A drain that failed is given up: retention applies again once the backing is back.</summary>
    public void CancelDrain() => _drainTo = 0;

    public bool Drained(long target) => window.Horizon >= target;

    /// <summary>The sequence number of the first batch not on the backing yet.</summary>
    public long HorizonSequence => _horizonSequence;

    /// <summary>
    /// Protects the sync point whose batch is <paramref name="sequence"/>, if it is still restorable (no
    /// batch after it is on the backing yet, or it is protected already); the destager calls it between steps.
    /// </summary>
    public bool TryProtect(long sequence, bool kept)
    {
        // A point protected already (a kept snapshot) stays restorable however far the horizon is; any other must be at or
        // after the last batch whose blocks the backing may hold (a step that failed half-way wrote some of its own).
        if (sequence + 1 < _restorableFrom && !protectedPoints.Contains(sequence)) return false;
        protectedPoints.Add(sequence, kept);
        return true;
    }

    /// <summary>
    /// Refuses a view of a point the destager has gone past while the snapshot store is damaged: the copies it lost are unknown,
    /// and a block whose copy is among them would be read from the backing, which holds later data.
    /// </summary>
    public void ThrowIfCopiesLost(long sequence)
    {
        if (CopiesMayBeLost(sequence)) BlockThrow.Error(BlockError.Io, $"volume {name}: the point at batch {sequence} cannot be read: {store.Damage}");
    }

    /// <summary>The store is damaged and the destager has gone past the point: some of the copies that served it may be lost.</summary>
    private bool CopiesMayBeLost(long sequence) => store.Damage is not null && sequence + 1 < _restorableFrom;

    /// <summary>
    /// The index of the volume at the sync point whose batch is <paramref name="sequence"/>: the log's
    /// entries from the horizon up to and including that batch (what is not in it is on the backing or,
    /// once overwritten there, preserved). Walked between steps, so no segment goes away meanwhile.
    /// </summary>
    public BlockIndex IndexAt(long sequence, long blocks)
    {
        var index = new BlockIndex(blocks);
        _walker.Seek(window.Horizon, _horizonSequence);
        while (_walker.Sequence <= sequence)
        {
            if (!_walker.TryRead())
                throw new BlockTargetException(BlockError.Io, $"log record {_walker.Sequence} at {_walker.Address} cannot be read back for a view of the past");
            foreach (var walked in _walker.Blocks())
                if (walked.Block < blocks) index.Set(walked.Block, walked.Entry);
            _walker.Advance();
        }
        return index;
    }

    /// <summary>Reads the next step of due history; null when nothing is due.</summary>
    public DestagePlan? PlanStep()
    {
        var durableTail = window.DurableTail;
        var horizon = window.Horizon;
        var address = horizon;
        var sequence = _horizonSequence;
        var generation = _horizonGeneration;
        if (address >= durableTail) return null;

        var retentionLimit = options.RetentionCapBytesFor(window.Capacity);
        // Writeback throttling (like dm-writecache's watermarks): past the retention cap, history is
        // destaged one step per destage interval while the log is below the high watermark, so
        // foreground log syncs do not queue behind a flood of backing writeback; above it, flat out.
        var highWatermark = retentionLimit + (window.Capacity - retentionLimit) / 2;
        var paced = window.Tail - address < highWatermark;
        if (paced && DateTime.UtcNow < _nextPacedStep) retentionLimit = long.MaxValue;
        var cutoff = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000 - (long)options.RetentionTime.TotalMicroseconds;
        var forcedTo = Math.Max(Math.Max(_drainTo, _roomTo), _publishedTo);
        // The destager runs on every tick (and on urgent wake-ups); while the oldest batch is inside the
        // retention window it stays there, so its header is not read again until its time comes, the
        // log passes the cap or someone needs its room.
        if (address == _notDueAddress && _notDueTime > cutoff && window.Tail - address <= retentionLimit && address >= forcedTo) return null;

        var newest = new SortedDictionary<long, DestageBlock>();
        var blocks = 0;
        long lastSyncPoint = 0, syncPointBefore = 0; // the newest batches closing a generation, and the one before it
        var shrinking = false;
        // A step never passes a protected point: the backing must hold exactly that point's blocks before
        // a later step overwrites (and preserves) them.
        var stopAfter = protectedPoints.FirstFrom(sequence) ?? long.MaxValue;
        _walker.Seek(address, sequence);
        while (_walker.Address < durableTail && blocks < StepBlocks && _walker.Sequence <= stopAfter)
        {
            if (!_walker.TryRead())
                throw new BlockTargetException(BlockError.Io, $"log record {_walker.Sequence} at {_walker.Address} cannot be read back for destaging");
            var header = _walker.Header;
            var overLimit = window.Tail - _walker.Address > retentionLimit;
            var forced = _walker.Address < forcedTo;
            var due = header.TimeMicros <= cutoff || overLimit || forced;
            if (!due)
            {
                // Keyed by the horizon, not where the batch was found (the next segment's start, past a gap).
                if (_walker.Sequence == _horizonSequence) (_notDueAddress, _notDueTime) = (horizon, header.TimeMicros);
                break;
            }
            // A record the open trusted (the persisted index covered it) is verified before it reaches the backing;
            // a corrupt one never does, nor anything after it (the volume is read-only and the destager stops).
            scrub.VerifyThrough((_walker.EndAddress >> LogFormat.BlockShift) - 1);
            if (scrub.CorruptRecords > 0) break;
            if ((overLimit || (forced && _walker.Address < _roomTo)) && header.TimeMicros > cutoff) shrinking = true;
            foreach (var walked in _walker.Blocks())
            {
                newest[walked.Block] = new DestageBlock(walked.Block, walked.Entry, walked.Type == LogEntryType.Trim);
                blocks++;
            }
            generation = _walker.GenerationAfter;
            if (header.IsSyncPoint) (syncPointBefore, lastSyncPoint) = (lastSyncPoint, _walker.Sequence);
            _walker.Advance();
            sequence = _walker.Sequence;
            address = _walker.Address;
        }
        if (address == horizon) return null;
        if (shrinking) ReportShrink(paced);
        else _shrinkReported = false;
        return new DestagePlan([.. newest.Values], Preserved(newest.Keys), address, sequence, generation,
            lastSyncPoint == sequence - 1 ? syncPointBefore : lastSyncPoint);
    }

    /// <summary>
    /// The blocks of a step (its first batch is the horizon's) whose backing content some protected point
    /// before the step still reads: those with a protected point at or after the block's newest preserved
    /// copy (a point before that copy has its own) and before the step.
    /// </summary>
    public List<long> Preserved(IEnumerable<long> blocks)
    {
        var preserve = new List<long>();
        if (protectedPoints.IsEmpty) return preserve;
        var before = _horizonSequence - 1;
        foreach (var block in blocks)
            if (protectedPoints.AnyIn(store.NewestUntil(block), before)) preserve.Add(block);
        return preserve;
    }

    private void ReportShrink(bool paced)
    {
        if (paced) _nextPacedStep = DateTime.UtcNow + options.DestageInterval;
        health.CountRetentionShrink();
        if (!_shrinkReported)
            logger.LogWarning("volume {Name}: the log needs room ({Used} of {Capacity} bytes in use); retention shrinks below {Retention} so writers do not stall",
                name, window.Used, window.Capacity, options.RetentionTime);
        _shrinkReported = true;
    }

    /// <summary>
    /// The blocks whose content may differ between the sync points whose batches are <paramref name="from"/>
    /// and <paramref name="to"/> (null: the live volume), without reading a block: those written in the
    /// log after <paramref name="from"/>, and, for what has been destaged since, those the destager
    /// preserved for points at or before it. A superset: a block written back to its old content counts.
    /// Walked between steps, like a view's index.
    /// </summary>
    public SortedSet<long> ChangedBetween(long from, long? to, long blocks)
    {
        ThrowIfCopiesLost(from); // what was destaged past it is known from the store's copies only
        var changed = new SortedSet<long>();
        Walk(from, to ?? long.MaxValue, blocks, wholeLog: false, block => changed.Add(block));
        return changed;
    }

    /// <summary>
    /// As <see cref="ChangedBetween"/> up to the live volume, one bit per block (a volume's worth of history stays small); fails
    /// when a record before the log's end cannot be read: a caller that narrows a resync must not take part of it for all.
    /// </summary>
    public System.Collections.BitArray ChangedSince(long from, int blocks)
    {
        // A damaged store may have lost the copies that say which blocks were destaged past it: the caller resyncs in full.
        if (CopiesMayBeLost(from))
            throw new InvalidDataException($"volume {name}: the snapshot store is damaged; what changed since batch {from} is unknown");
        var changed = new System.Collections.BitArray(blocks);
        Walk(from, long.MaxValue, blocks, wholeLog: true, block => changed[(int)block] = true);
        return changed;
    }

    private void Walk(long from, long until, long blocks, bool wholeLog, Action<long> changed)
    {
        // Destaged after `from`: every overwrite of the backing since made a copy for it (it was protected then).
        foreach (var (block, until2) in store.CopiesAfter(from))
            if (until2 <= until && block < blocks) changed(block);
        _walker.Seek(window.Horizon, _horizonSequence);
        while (_walker.Address < window.Tail && _walker.Sequence <= until)
        {
            if (!_walker.TryRead())
            {
                if (wholeLog && _walker.Address < window.DurableTail)
                    throw new InvalidDataException($"log record {_walker.Sequence} at {_walker.Address} cannot be read back");
                break; // the end of what is written
            }
            if (_walker.Sequence > from)
                foreach (var walked in _walker.Blocks())
                    if (walked.Block < blocks) changed(walked.Block);
            _walker.Advance();
        }
    }

    /// <summary>Records a new snapshot store length (after compaction) in the checkpoint, at the same horizon.</summary>
    public void SaveStoreLength(long length) =>
        new Checkpoint(checkpoint.VolumeId, window.Horizon, _horizonSequence, _horizonGeneration, length, _restorableFrom).Save(directory);

    /// <summary>
    /// Called before a step writes the backing (its preserved copies are durable): from then on the sync points before its
    /// last batch no longer read true from the backing, whether the step completes, fails half-way or is cut off by a crash.
    /// Recorded in the checkpoint first, so a restart does not offer them either.
    /// </summary>
    public void BeginWrite(DestagePlan plan)
    {
        if (plan.Sequence <= _restorableFrom) return; // a retry of a step that began already
        // A restart offers the points its replay finds from the horizon's batch on (closed or not: one a peer had not confirmed
        // yet is in the log too): only when the step passes one of those does the checkpoint need to say so first (a stream of
        // writes without FLUSH closes none: no extra sync per step). The step's own last batch stays restorable.
        if (plan.PassedSyncPoint > 0)
            new Checkpoint(checkpoint.VolumeId, window.Horizon, _horizonSequence, _horizonGeneration, store.Length, plan.Sequence).Save(directory);
        _restorableFrom = plan.Sequence;
        history.TrimBefore(plan.Sequence - 1);
    }

    /// <summary>The index was told the step's blocks are on the backing (before <see cref="Complete"/>, which may fail).</summary>
    public void Published(DestagePlan plan) => _publishedTo = Math.Max(_publishedTo, plan.Address);

    /// <summary>Advances the horizon past the step (checkpoint first, so a crash never replays less than it must) and frees whole segments.</summary>
    public void Complete(DestagePlan plan)
    {
        _restorableFrom = Math.Max(_restorableFrom, plan.Sequence);
        new Checkpoint(checkpoint.VolumeId, plan.Address, plan.Sequence, plan.Generation, store.Length, _restorableFrom).Save(directory);
        window.SetHorizon(plan.Address);
        _horizonSequence = plan.Sequence;
        _horizonGeneration = plan.Generation;
        // The sync point of the step's last batch is the backing itself now: still restorable.
        history.TrimBefore(plan.Sequence - 1);
        Release(plan.Address);
    }

    /// <summary>
    /// With everything written destaged and the flusher gone on to a later segment (it sealed the rest
    /// of the tail's), the segments below the seal hold nothing needed: the horizon moves to the seal and
    /// they are released, so a log can reuse its one segment. True when the horizon moved.
    /// </summary>
    public bool ReleaseSealedSegments()
    {
        var horizon = window.Horizon;
        var sealedTo = window.Sealed;
        if (horizon != window.Tail || horizon != window.DurableTail || sealedTo <= horizon) return false;
        // Nothing lies between the horizon and the seal: the horizon moves there (recovery looks for the
        // next batch at that segment start), so the unused rest of the segment no longer counts as used.
        new Checkpoint(checkpoint.VolumeId, sealedTo, _horizonSequence, _horizonGeneration, store.Length, _restorableFrom).Save(directory);
        window.SetHorizon(sealedTo);
        Release(sealedTo);
        return true;
    }

    /// <summary>Releases every segment that ends at or before <paramref name="address"/>.</summary>
    private bool Release(long address)
    {
        var released = false;
        foreach (var segment in medium.Segments)
        {
            if ((segment + 1) * medium.SegmentSize > address) continue;
            medium.Release(segment);
            released = true;
        }
        return released;
    }
}
