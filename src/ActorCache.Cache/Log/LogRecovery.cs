using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>What replay found.</summary>
public sealed record RecoveryResult
{
    public long Tail { get; init; }
    public long NextSequence { get; init; }
    /// <summary>The open generation: the one after the last sync point found.</summary>
    public long Generation { get; init; }
    /// <summary>Time of the last batch replayed (Unix microseconds), or 0: new batches are never older.</summary>
    public long LastTimeMicros { get; init; }
    /// <summary>Every sync point from the horizon on, oldest first.</summary>
    public IReadOnlyList<SyncPoint> SyncPoints { get; init; } = [];
    public long BatchesReplayed { get; init; }
    public long BytesReplayed { get; init; }
    /// <summary>Set when a record before the tail is corrupt: the volume must not accept writes.</summary>
    public string? Corruption { get; init; }
    /// <summary>Blocks whose newest version may be in the corrupt record: reads of them fail with EIO. Null with <see cref="AllDamaged"/>.</summary>
    public HashSet<long>? DamagedBlocks { get; init; }
    public bool AllDamaged { get; init; }
    /// <summary>Log address below which index entries are older than the damage.</summary>
    public long DamageAddress { get; init; }
    /// <summary>Set when a torn tail was cut off (normal after a crash between syncs; data there was never acknowledged as durable unless the medium lost it).</summary>
    public string? TornTail { get; init; }
    /// <summary>The newest batch in the log (its header address and end), or address -1 when there is none since the horizon.</summary>
    public (long Address, long End) LastBatch { get; init; } = (-1, 0);
    /// <summary>Where replay began: the horizon, or the end of the batch a persisted index covered.</summary>
    public long ReplayedFrom { get; init; }
    /// <summary>Index entries taken from the persisted index instead of replayed (0 after a full replay).</summary>
    public long PersistedEntries { get; init; }
    /// <summary>Log bytes the persisted index covered, so they were not replayed (0 after a full replay).</summary>
    public long SkippedBytes { get; init; }
}

/// <summary>Where a replay resumes after a persisted index: the sync points, the time and the last batch it covered.</summary>
public sealed record ReplayStart(IReadOnlyList<SyncPoint> SyncPoints, long LastTimeMicros, long BatchAddress, long BatchEnd);

/// <summary>
/// Rebuilds the block index and the sync points from the log after a start or a crash: replays batches
/// in log order from the checkpoint (through the <see cref="LogWalker"/>), checking every header and
/// data checksum. A torn tail (records written after the last fdatasync) is cut off; a bad record that
/// a later, durable record proves was once complete is corruption: reported, never served.
/// </summary>
public static class LogRecovery
{
    /// <param name="checkpoint">Where replay starts (address, sequence, generation there) and the volume id.</param>
    /// <param name="start">What a persisted index covered before that point, when replay resumes after one.</param>
    /// <param name="durableThrough">
    /// A batch the log is known to have made durable (the one a persisted index was taken at: it is saved only after that): a bad
    /// record up to it is corruption even when no later record vouches for it (the last records before a clean close), never a torn tail.
    /// </param>
    public static RecoveryResult Replay(ILogMedium medium, Checkpoint checkpoint, BlockIndex index, int maxBatchBlocks,
        IProgress<(long Done, long Total)>? progress = null, ReplayStart? start = null, long durableThrough = 0)
    {
        var walker = new LogWalker(medium, checkpoint.VolumeId);
        walker.Seek(checkpoint.Horizon, checkpoint.Sequence);
        var data = GC.AllocateUninitializedArray<byte>(maxBatchBlocks * LogFormat.BlockSize, pinned: true);
        var generation = checkpoint.Generation;
        var lastTime = start?.LastTimeMicros ?? 0L;
        var syncPoints = new List<SyncPoint>(start?.SyncPoints ?? []);
        var lastBatch = start is null ? (-1L, 0L) : (start.BatchAddress, start.BatchEnd);
        var segments = medium.Segments;
        var total = segments.Count == 0 ? 0 : (segments[^1] + 1) * medium.SegmentSize - checkpoint.Horizon;
        long batches = 0, bytes = 0;
        string? corruption = null, torn = null;
        HashSet<long>? damaged = null;
        var allDamaged = false;
        var damageAddress = 0L;

        void MarkDamaged(LogEntry[]? entries)
        {
            if (entries is null)
            {
                allDamaged = true; // its header is unreadable: which blocks it held is unknown
                return;
            }
            damaged ??= [];
            foreach (var entry in entries)
                for (var b = 0; b < entry.BlockCount; b++) damaged.Add(entry.Block + b);
        }

        while (true)
        {
            var expected = walker.Address; // the batch goes here or, if it did not fit, at the next segment start
            var found = walker.TryRead();
            var dataOk = found && DataOk(walker, data, maxBatchBlocks);
            // The blocks a bad record names are taken first: looking further reuses the entry buffer.
            var named = found && !dataOk ? walker.Entries.ToArray() : null;
            // A write that failed part-way can leave a header where the batch was first meant to go; the
            // batch then went to the next segment start: a valid copy there is the one.
            if (found && !dataOk && walker.TryReadAtNextSegment())
            {
                dataOk = DataOk(walker, data, maxBatchBlocks);
                if (!dataOk) named = [.. named!, .. walker.Entries];
            }
            if (!dataOk)
            {
                // The end of the log, or damage. A later record that was written after this one was
                // fdatasync'ed proves this one was complete once: then it is corruption.
                var address = walker.Address;
                var sequence = walker.Sequence;
                var knownDurable = sequence <= durableThrough;
                FindLater(walker.Reader, medium, address, sequence, out var next, out var vouching);
                if (!vouching.Found && !knownDurable)
                {
                    if (found || walker.Reader.AnythingAt(address, sequence))
                        torn = $"log ends with an incomplete record (sequence {sequence}) at address {address}; it was never acknowledged as durable and was cut off";
                    // The log ends where the last good batch did, not at the next segment start where a torn batch
                    // was found: the destager reads every batch up to the tail and finds none in between.
                    walker.Seek(expected, sequence);
                    CutTail(walker.Reader, medium, expected, sequence);
                    break;
                }
                corruption = $"log record {sequence} at address {address} (segment {address / medium.SegmentSize}) is corrupt " +
                             (knownDurable ? $"although the persisted index says the log was made durable through record {durableThrough}"
                                 : $"although record {vouching.Header.Sequence} after it says it was made durable");
                MarkDamaged(named);
                if (!next.Found)
                {
                    // The last records the log holds, known durable: kept as they are for inspection (the volume turns read-only,
                    // so nothing is appended after them).
                    if (sequence < durableThrough) allDamaged = true; // the durable records after it cannot be found
                    damageAddress = address;
                    walker.Seek(expected, sequence);
                    break;
                }
                // Proven complete once, the bad record is damage, not the end: replay resumes at the first intact record after it,
                // vouching or not (the ones written while its sync was in flight do not, and hold newer data all the same).
                if (next.Header.Sequence != sequence + 1) allDamaged = true; // records in between are unreadable too
                damageAddress = next.Address;
                // Carry on with the records after the damage: they hold newer data that is intact.
                walker.Seek(next.Address, next.Header.Sequence);
                continue;
            }

            foreach (var block in walker.Blocks())
            {
                if (block.Block >= index.Blocks) continue;
                index.Set(block.Block, block.Entry);
                damaged?.Remove(block.Block);
            }
            var header = walker.Header;
            if (header.IsSyncPoint) syncPoints.Add(new SyncPoint(header.Generation, header.TimeMicros, header.Sequence, walker.EndAddress));
            generation = walker.GenerationAfter;
            lastTime = Math.Max(lastTime, header.TimeMicros);
            lastBatch = (walker.Address, walker.EndAddress);
            batches++;
            bytes += header.SizeBytes;
            walker.Advance();
            if ((batches & 63) == 0) progress?.Report((walker.Address - checkpoint.Horizon, total));
        }
        progress?.Report((total, total));
        return new RecoveryResult
        {
            Tail = walker.Address,
            NextSequence = walker.Sequence,
            Generation = generation,
            LastTimeMicros = lastTime,
            SyncPoints = syncPoints,
            BatchesReplayed = batches,
            BytesReplayed = bytes,
            Corruption = corruption,
            DamagedBlocks = damaged,
            AllDamaged = allDamaged,
            DamageAddress = damageAddress,
            TornTail = torn,
            LastBatch = lastBatch,
            ReplayedFrom = checkpoint.Horizon,
        };
    }

    /// <summary>True when a valid header numbered <paramref name="sequence"/> or later is in [<paramref name="address"/>, <paramref name="end"/>).</summary>
    private static bool HoldsRecordFrom(LogReader reader, ILogMedium medium, long address, long end, long sequence)
    {
        var scan = new byte[1 << 20];
        for (var chunk = address; chunk < end; chunk += scan.Length)
        {
            var length = (int)Math.Min(scan.Length, end - chunk);
            if (!medium.TryRead(chunk, scan.AsSpan(0, length))) return true; // unreadable: wiped, as before
            for (var at = 0; at + LogFormat.BlockSize <= length; at += LogFormat.BlockSize)
                if (BitConverter.ToUInt64(scan, at) == LogFormat.Magic && reader.TryReadAt(chunk + at, out var header) && header.Sequence >= sequence)
                    return true;
        }
        return false;
    }

    /// <summary>True when the current batch's data can be read and matches every entry's checksum (recovery and the scrub).</summary>
    internal static bool DataOk(LogWalker walker, byte[] data, int maxBatchBlocks) =>
        walker.Header.DataBlocks <= maxBatchBlocks && walker.TryReadData(data) && LogFormat.DataMatches(walker.Entries, data);

    /// <summary>A valid record found past a bad one: where it is and its header; <see cref="Address"/> is -1 when there is none.</summary>
    internal readonly record struct LaterRecord(long Address, BatchHeader Header)
    {
        public static readonly LaterRecord None = new(-1, default);
        public bool Found => Address >= 0;
    }

    /// <summary>
    /// Looks past a bad record, in one scan of the rest of the log, for the first valid record with a higher sequence
    /// (<paramref name="next"/>: where replay, or the scrub, continues) and the first whose durable-through covers the bad
    /// one (<paramref name="vouching"/>: it proves the bad record was complete once).
    /// </summary>
    internal static void FindLater(LogReader reader, ILogMedium medium, long address, long sequence, out LaterRecord next, out LaterRecord vouching)
    {
        next = vouching = LaterRecord.None;
        var segments = medium.Segments;
        if (segments.Count == 0) return;
        var scan = new byte[1 << 20];
        var end = (segments[^1] + 1) * medium.SegmentSize;
        for (var chunk = address + LogFormat.BlockSize; chunk < end; chunk += scan.Length)
        {
            var length = (int)Math.Min(scan.Length, end - chunk);
            if (!medium.TryRead(chunk, scan.AsSpan(0, length))) continue; // a segment that is gone
            for (var at = 0; at + LogFormat.BlockSize <= length; at += LogFormat.BlockSize)
            {
                if (BitConverter.ToUInt64(scan, at) != LogFormat.Magic) continue;
                if (!reader.TryReadAt(chunk + at, out var header) || header.Sequence <= sequence) continue;
                if (!next.Found || header.Sequence < next.Header.Sequence) next = new LaterRecord(chunk + at, header);
                if (header.DurableThrough >= sequence && (!vouching.Found || header.Sequence < vouching.Header.Sequence))
                    vouching = new LaterRecord(chunk + at, header);
            }
        }
    }

    /// <summary>
    /// Wipes every record numbered <paramref name="sequence"/> or later from <paramref name="address"/> to the end of its segment,
    /// and drops later segments.
    /// </summary>
    private static void CutTail(LogReader reader, ILogMedium medium, long address, long sequence)
    {
        var segment = address / medium.SegmentSize;
        var end = (segment + 1) * medium.SegmentSize;
        // Only records numbered as the log will number its next batches must go. Older ones are harmless, as in every recycled
        // file: the walker wants the next sequence, and a record older than a bad one cannot vouch for it. So after a clean stop
        // nothing is wiped: punching the rest of the segment would turn its written extents into holes, which every commit into
        // them then pays for (a journal commit, or the zeroes written ahead again), after every restart.
        if (HoldsRecordFrom(reader, medium, address, end, sequence)) medium.Discard(address, end - address);
        // Later segments can hold complete records that were never durable, with sequence numbers the
        // log will use again: wiped before they are released, so a recycled file never carries them.
        foreach (var later in medium.Segments.Where(s => s > segment))
        {
            medium.Discard(later * medium.SegmentSize, medium.SegmentSize);
            medium.Release(later);
        }
    }
}
