using System.Buffers;
using System.Runtime.CompilerServices;
using ActorCache.Blocks;
using ActorCache.Cache.Actors;

namespace ActorCache.Cache;

/// <summary>
/// The write-back write path (DESIGN §3): claims ring slots (waiting when the ring is full: backpressure,
/// never a dropped write), copies the request in (or lets the front receive it straight into the slots:
/// staged writes), merges partial blocks with their current content, and queues the request in log order
/// through the <see cref="AppendQueue"/>, which also points the index at the slots. The write is then
/// visible to every reader and acknowledged; the flusher takes it from there.
/// </summary>
internal sealed class CacheWriter(string name, RingBuffer ring, RingLine line, AppendQueue queue, CacheReader reader, Doorbell flusher,
    CacheHealth health, CacheOptions options)
{
    private const int BlockSize = LogFormat.BlockSize;
    private const int BlockShift = LogFormat.BlockShift;

    /// <summary>This volume's line on the node's ring: its oldest waiting write holds the head of it, and it holds at most its share.</summary>
    private readonly RingLine _line = line;

    /// <summary>Queues a data write; returns its ticket (its place in log order), or <see cref="AppendQueue.NotWriteBack"/> when the volume left write-back.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<long> WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var first = offset >> BlockShift;
        var count = (int)(((offset + data.Length - 1) >> BlockShift) - first + 1);
        var slots = ArrayPool<int>.Shared.Rent(count);
        try
        {
            await ClaimAsync(slots.AsMemory(0, count), ct).ConfigureAwait(false);
            try
            {
                while (true)
                {
                    var state = new DataWrite(this, offset, data.Span, slots.AsSpan(0, count));
                    var ticket = queue.Append(ref state, static (q, ref s) => s.Writer.QueueDataLocked(q, ref s));
                    if (ticket == AppendQueue.NotWriteBack) Release(slots.AsSpan(0, count)); // the caller writes it through
                    if (ticket != AppendQueue.Paused) return ticket;
                    await queue.Resumed.ConfigureAwait(false);
                }
            }
            catch
            {
                Release(slots.AsSpan(0, count)); // nothing was queued (closed, or a partial block's old content could not be read)
                throw;
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(slots);
            RingIfBatchDue();
        }
    }

    /// <summary>
    /// Queues a trim or zeroing: one record without data for the whole blocks, zero bytes merged with the
    /// old content for a block it covers only in part, all under one hold of the lock (a crash never
    /// splits it). Returns the last record's ticket.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<long> ZeroAsync(long offset, long length, LogEntryType type, CancellationToken ct)
    {
        var first = offset >> BlockShift;
        var count = ((offset + length - 1) >> BlockShift) - first + 1;
        var headPartial = (offset & (BlockSize - 1)) != 0 || length < BlockSize;
        var tailPartial = count > 1 && ((offset + length) & (BlockSize - 1)) != 0;
        var slotCount = (headPartial ? 1 : 0) + (tailPartial ? 1 : 0);
        var slots = slotCount == 0 ? null : ArrayPool<int>.Shared.Rent(slotCount);
        try
        {
            if (slotCount > 0) await ClaimAsync(slots.AsMemory(0, slotCount), ct).ConfigureAwait(false);
            try
            {
                while (true)
                {
                    var state = new ZeroWrite(this, offset, offset + length, first, count, type, headPartial, tailPartial, slots.AsSpan(0, slotCount));
                    var ticket = queue.Append(ref state, static (q, ref s) => s.Writer.QueueZeroLocked(q, ref s));
                    if (ticket == AppendQueue.NotWriteBack) Release(slots.AsSpan(0, slotCount)); // the caller writes it through
                    if (ticket != AppendQueue.Paused) return ticket;
                    await queue.Resumed.ConfigureAwait(false);
                }
            }
            catch
            {
                Release(slots.AsSpan(0, slotCount));
                throw;
            }
        }
        finally
        {
            if (slots is not null) ArrayPool<int>.Shared.Return(slots);
            RingIfBatchDue();
        }
    }

    /// <summary>
    /// Queues a batch of whole-block entries as one request: a secondary applying its primary's batch
    /// (DESIGN §4). One claim of ring slots for all its data, copied in before the lock is taken (whole
    /// blocks merge with nothing), then every entry queued under one hold of the lock, the later ones
    /// continuing the first: the batch lands in one batch of this log whenever it fits, so a crash of
    /// this node never keeps half of it. Returns the last ticket, or <see cref="AppendQueue.NotWriteBack"/>.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<long> WriteBatchAsync(ReadOnlyMemory<LogEntry> entries, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var count = data.Length >> BlockShift;
        var slots = ArrayPool<int>.Shared.Rent(Math.Max(1, count));
        try
        {
            if (count > 0) await ClaimAsync(slots.AsMemory(0, count), ct).ConfigureAwait(false);
            try
            {
                for (var i = 0; i < count; i++) data.Span.Slice(i << BlockShift, BlockSize).CopyTo(ring.Slot(slots[i]));
                while (true)
                {
                    var state = new BatchWrite(entries.Span, slots.AsSpan(0, count));
                    var ticket = queue.Append(ref state, static (q, ref s) => QueueBatchLocked(q, ref s));
                    if (ticket == AppendQueue.NotWriteBack) Release(slots.AsSpan(0, count)); // the caller applies it entry by entry
                    if (ticket != AppendQueue.Paused) return ticket;
                    await queue.Resumed.ConfigureAwait(false);
                }
            }
            catch
            {
                Release(slots.AsSpan(0, count)); // nothing was queued (the volume is closing)
                throw;
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(slots);
            RingIfBatchDue();
        }
    }

    /// <summary>
    /// Queues a batch whose data a secondary received straight into staged slots (<see cref="StageAsync"/> with the
    /// batch's data blocks), in entry order: the same queueing as <see cref="WriteBatchAsync"/> without its copy.
    /// Returns the last ticket; on <see cref="AppendQueue.NotWriteBack"/> the slots stay staged for the caller, who
    /// copies the data out, abandons them and applies the entries one by one.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<long> CommitStagedBatchAsync(ReadOnlyMemory<LogEntry> entries, StagedWrite staged)
    {
        try
        {
            while (true)
            {
                var state = new BatchWrite(entries.Span, staged.Tokens);
                var ticket = queue.Append(ref state, static (q, ref s) => QueueBatchLocked(q, ref s));
                if (ticket == AppendQueue.NotWriteBack) return ticket;
                if (ticket != AppendQueue.Paused)
                {
                    staged.Clear();
                    return ticket;
                }
                await queue.Resumed.ConfigureAwait(false);
            }
        }
        catch
        {
            Abandon(staged); // nothing was queued (the volume is closing)
            throw;
        }
        finally
        {
            RingIfBatchDue();
        }
    }

    /// <summary>Claims the slots a whole-block write needs and hands their memory to the front, which receives the payload into them.</summary>
    public async ValueTask StageAsync(long offset, int length, StagedWrite staged, IBlockTarget stagedBy, CancellationToken ct)
    {
        var count = length >> BlockShift;
        staged.Begin(stagedBy, offset, length, count);
        try
        {
            await ClaimAsync(staged.TokenMemory, ct).ConfigureAwait(false);
        }
        catch
        {
            staged.Clear(); // nothing was claimed
            throw;
        }
        // Slots freed together come back in order, so a write usually gets a few long runs: few receives.
        var slots = staged.Tokens;
        var runStart = 0;
        for (var i = 1; i <= slots.Length; i++)
        {
            if (i < slots.Length && slots[i] == slots[i - 1] + 1 && RingBuffer.InOneChunk(slots[runStart], slots[i])) continue;
            staged.AddSegment(ring.SlotRun(slots[runStart], i - runStart));
            runStart = i;
        }
    }

    /// <summary>The payload is in the staged slots: queue the write. Returns its ticket, or <see cref="AppendQueue.Paused"/> (wait for <see cref="AppendQueue.Resumed"/> and commit again).</summary>
    public long CommitStaged(StagedWrite staged)
    {
        var state = new StagedCommit(staged.Offset >> BlockShift, staged.Tokens);
        try
        {
            var ticket = queue.Append(ref state, static (q, ref s) =>
            {
                var ticket = q.QueueLocked(s.First, s.Slots.Length, LogEntryType.Data, s.Slots);
                for (var i = 0; i < s.Slots.Length; i++) q.PointLocked(s.First + i, BlockIndex.Encode(BlockLocation.Ring, s.Slots[i]));
                return ticket;
            });
            if (ticket >= 0) staged.Clear();
            return ticket;
        }
        catch
        {
            Abandon(staged); // not queued (the volume is closing): its slots go back to the node's ring
            throw;
        }
        finally
        {
            RingIfBatchDue();
        }
    }

    /// <summary>
    /// Writes below <see cref="EagerBatchBlocks"/> stay queued for the FLUSH or FUA that will want them (it
    /// rings for itself), or for the flusher's tick: at queue depth 1 a write and its FLUSH are then one
    /// log write with the sync-point flag and one fdatasync, not a batch, a wake-up, a sync-point record
    /// and then the fdatasync. A plain write is not durable anyway (DESIGN §2); a crash may take it in
    /// either case. The flusher is rung at once when the ring runs short, since it frees the slots.
    /// </summary>
    private void RingIfBatchDue()
    {
        if (queue.HoldsBatch(Math.Min(EagerBatchBlocks, options.MaxBatchBlocks)) || ring.FreeSlots < ring.SlotCount / 4) flusher.Ring();
    }

    /// <summary>Queued blocks (256 KiB) that make a batch worth writing without a FLUSH asking for it.</summary>
    internal const int EagerBatchBlocks = 64;

    public void Abandon(StagedWrite staged)
    {
        Release(staged.Tokens);
        staged.Clear();
    }

    private void Release(ReadOnlySpan<int> slots)
    {
        ring.ReleaseAll(slots, _line);
    }

    /// <summary>
    /// Takes free ring slots, waiting while the ring is full (the flusher frees slots as batches reach the
    /// log), for at most the ring wait timeout; then the write fails with ENOSPC. Completes synchronously
    /// when slots are free.
    /// </summary>
    private ValueTask ClaimAsync(Memory<int> slots, CancellationToken ct)
    {
        ThrowIfLogRefusesWrites();
        if (ring.TryClaim(slots.Span, 0, _line)) return ValueTask.CompletedTask;
        flusher.Ring();
        return WaitAndClaimAsync(slots, ct);
    }

    private static readonly TimeSpan RingPoll = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// The ring was full: wait for the flusher to free slots. The wait is one claim (<see cref="RingBuffer.NewClaimer"/>),
    /// so the oldest waiting write holds the head of this volume's line and a large one is not starved by small ones.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WaitAndClaimAsync(Memory<int> slots, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + options.RingWaitTimeout;
        var claimer = ring.NewClaimer();
        var counted = false;
        try
        {
            while (true)
            {
                // Fetch the wake-up before trying once more, so a release in between is not missed.
                var space = ring.SpaceFreed;
                if (ring.TryClaim(slots.Span, claimer, _line)) return;
                flusher.Ring();
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) throw NoRingSpace();
                if (!counted) health.CountRingWait();
                counted = true;
                try
                {
                    // Woken once enough slots are free for most writes; a claim that fits in fewer (stalled volumes left only a
                    // few) looks again every so often, and once more at the deadline before it fails.
                    await space.WaitAsync(left < RingPoll ? left : RingPoll, ct).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                }
                ThrowIfLogRefusesWrites();
            }
        }
        finally
        {
            ring.Withdraw(claimer, _line); // a no-op once claimed: the claim let go of the head of the line itself
        }
    }

    private BlockTargetException NoRingSpace() => new(BlockError.NoSpace,
        $"volume {name}: no ring space for {options.RingWaitTimeout.TotalSeconds:F0}s; the log cannot keep up ({health.LogFailure?.Message ?? "slow log disk"})");

    /// <summary>With a full log file system and the fail policy, writers get ENOSPC at once instead of waiting.</summary>
    private void ThrowIfLogRefusesWrites()
    {
        if (health.LogUntrusted is { } untrusted) throw new BlockTargetException(BlockError.Io, $"volume {name}: {untrusted}");
        if (health.LogFailure is { Error: BlockError.NoSpace } full && options.LogFullPolicy == LogFullPolicy.Fail)
            throw new BlockTargetException(BlockError.NoSpace, $"volume {name}: the log disk is full ({full.Message}); retry when space returns");
    }

    /// <summary>A data write: one record, every block in a slot, partial blocks merged with their current content. Under the queue's lock.</summary>
    private long QueueDataLocked(AppendQueue q, ref DataWrite w)
    {
        var first = w.Offset >> BlockShift;
        var end = w.Offset + w.Data.Length;
        for (var i = 0; i < w.Slots.Length; i++)
        {
            var block = first + i;
            var blockStart = block << BlockShift;
            var destination = ring.Slot(w.Slots[i]);
            var from = Math.Max(w.Offset, blockStart);
            var to = Math.Min(end, blockStart + BlockSize);
            if (to - from < BlockSize) reader.ReadBlock(q.Index, block, destination); // read-modify-write of a partial block
            w.Data.Slice((int)(from - w.Offset), (int)(to - from)).CopyTo(destination[(int)(from - blockStart)..]);
        }
        var ticket = q.QueueLocked(first, w.Slots.Length, LogEntryType.Data, w.Slots);
        for (var i = 0; i < w.Slots.Length; i++) q.PointLocked(first + i, BlockIndex.Encode(BlockLocation.Ring, w.Slots[i]));
        return ticket;
    }

    /// <summary>
    /// A trim/zero: zero bytes for a partial first and last block, one entry without data for the whole
    /// ones between. Both partial blocks are merged before anything is queued, so a failed read leaves
    /// nothing half queued. Under the queue's lock.
    /// </summary>
    private long QueueZeroLocked(AppendQueue q, ref ZeroWrite w)
    {
        var last = w.First + w.Count - 1;
        if (w.HeadPartial) MergeZeroBytes(q, ref w, w.First, w.Slots[0]);
        if (w.TailPartial) MergeZeroBytes(q, ref w, last, w.Slots[^1]);
        long ticket = 0;
        var wholeFirst = w.First;
        var wholeLast = last;
        if (w.HeadPartial)
        {
            ticket = q.QueueLocked(w.First, 1, LogEntryType.Data, w.Slots[..1]);
            q.PointLocked(w.First, BlockIndex.Encode(BlockLocation.Ring, w.Slots[0]));
            wholeFirst++;
        }
        if (w.TailPartial) wholeLast--;
        if (wholeFirst <= wholeLast)
        {
            ticket = q.QueueLocked(wholeFirst, (int)(wholeLast - wholeFirst + 1), w.Type, [], continues: w.HeadPartial);
            var entry = BlockIndex.UnloggedZero(ticket);
            for (var block = wholeFirst; block <= wholeLast; block++) q.PointLocked(block, entry);
        }
        if (w.TailPartial)
        {
            ticket = q.QueueLocked(last, 1, LogEntryType.Data, w.Slots[^1..], continues: true);
            q.PointLocked(last, BlockIndex.Encode(BlockLocation.Ring, w.Slots[^1]));
        }
        return ticket;
    }

    /// <summary>A batch's entries, their data already in their slots (in entry order). Under the queue's lock.</summary>
    private static long QueueBatchLocked(AppendQueue q, ref BatchWrite w)
    {
        long ticket = 0;
        var used = 0;
        for (var i = 0; i < w.Entries.Length; i++)
        {
            var entry = w.Entries[i];
            if (entry.Type == LogEntryType.Data)
            {
                var run = w.Slots.Slice(used, entry.BlockCount);
                used += entry.BlockCount;
                ticket = q.QueueLocked(entry.Block, run.Length, LogEntryType.Data, run, continues: i > 0);
                for (var b = 0; b < run.Length; b++) q.PointLocked(entry.Block + b, BlockIndex.Encode(BlockLocation.Ring, run[b]));
            }
            else
            {
                ticket = q.QueueLocked(entry.Block, entry.BlockCount, entry.Type, [], continues: i > 0);
                var unlogged = BlockIndex.UnloggedZero(ticket);
                for (var b = 0; b < entry.BlockCount; b++) q.PointLocked(entry.Block + b, unlogged);
            }
        }
        return ticket;
    }

    /// <summary>The block's current content with the zeroed range cleared, in its slot.</summary>
    private void MergeZeroBytes(AppendQueue q, ref ZeroWrite w, long block, int slot)
    {
        var blockStart = block << BlockShift;
        var destination = ring.Slot(slot);
        reader.ReadBlock(q.Index, block, destination);
        destination[(int)(Math.Max(w.Offset, blockStart) - blockStart)..(int)(Math.Min(w.End, blockStart + BlockSize) - blockStart)].Clear();
    }

    private ref struct DataWrite(CacheWriter writer, long offset, ReadOnlySpan<byte> data, Span<int> slots)
    {
        public readonly CacheWriter Writer = writer;
        public readonly long Offset = offset;
        public readonly ReadOnlySpan<byte> Data = data;
        public readonly Span<int> Slots = slots;
    }

    private ref struct ZeroWrite(CacheWriter writer, long offset, long end, long first, long count, LogEntryType type, bool headPartial,
        bool tailPartial, Span<int> slots)
    {
        public readonly CacheWriter Writer = writer;
        public readonly long Offset = offset, End = end, First = first, Count = count;
        public readonly LogEntryType Type = type;
        public readonly bool HeadPartial = headPartial, TailPartial = tailPartial;
        public readonly Span<int> Slots = slots;
    }

    private ref struct BatchWrite(ReadOnlySpan<LogEntry> entries, Span<int> slots)
    {
        public readonly ReadOnlySpan<LogEntry> Entries = entries;
        public readonly Span<int> Slots = slots;
    }

    private ref struct StagedCommit(long first, Span<int> slots)
    {
        public readonly long First = first;
        public readonly Span<int> Slots = slots;
    }
}
