using System.Buffers;
using System.Runtime.CompilerServices;
using ActorCache.Blocks;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// The cache target (DESIGN §3): a write is copied into ring slots and indexed, then acknowledged; the
/// flusher appends it to the checksummed log (group commit for FLUSH/FUA); the destager copies the log
/// to the backing once history is older than the retention window. Reads find the newest version of
/// every block in ring, log or backing through the lock-free index.
/// </summary>
public sealed partial class WriteBackCache : IBlockTarget
{
    private const int BlockSize = LogFormat.BlockSize;
    private const int BlockShift = LogFormat.BlockShift;
    private const int MaxReadRunBlocks = 256; // 1 MiB per log read

    private readonly IBlockTarget _backing;
    private readonly RingBuffer _ring;
    private readonly ILogMedium _medium;
    private readonly CacheOptions _options;
    private readonly ILogger _logger;
    private readonly BlockIndex _index;
    private readonly Guid _volumeId;
    private readonly string _name;

    // Everything below is guarded by _append: the log order of writes is the order they take it.
    private readonly Lock _append = new();
    private readonly Queue<PendingRecord> _pending = new(4096);
    private readonly int[] _pendingSlots;
    private int _pendingSlotHead, _pendingSlotCount;
    private long _appendedTicket, _writtenTicket, _durableTicket;
    private readonly List<(long Ticket, TaskCompletionSource Done)> _flushWaiters = [];

    private volatile CacheMode _mode;
    private volatile string? _readOnlyReason;
    private volatile BlockTargetException? _logFailure;
    private readonly HashSet<long>? _damagedBlocks;
    private readonly bool _allDamaged;
    private readonly long _damageAddressBlock;

    private long _batchesWritten, _syncs, _blocksDestaged, _ringWaits, _retentionShrinks;

    private WriteBackCache(string name, IBlockTarget backing, RingBuffer ring, ILogMedium medium, CacheOptions options,
        ILogger logger, Checkpoint checkpoint, BlockIndex index, RecoveryResult recovery, CacheMode mode)
    {
        _name = name;
        _backing = backing;
        _ring = ring;
        _medium = medium;
        _options = options;
        _logger = logger;
        _index = index;
        _volumeId = checkpoint.VolumeId;
        _mode = mode;
        // Parts of a large write are released as their batches land, while later writes queue behind it.
        _pendingSlots = new int[ring.SlotCount + 16384];
        _extentTable = new ExtentHandle?[index.ExtentCount];
        _tail = recovery.Tail;
        _nextSequence = recovery.NextSequence;
        _generation = recovery.Generation;
        _durableSequence = recovery.NextSequence - 1;
        _durableTail = recovery.Tail;
        _horizon = checkpoint.Horizon;
        _horizonSequence = checkpoint.Sequence;
        _horizonGeneration = checkpoint.Generation;
        _readOnlyReason = recovery.Corruption;
        _damagedBlocks = recovery.DamagedBlocks;
        _allDamaged = recovery.AllDamaged;
        _damageAddressBlock = recovery.DamageAddress >> BlockShift;
        Recovery = recovery;
    }

    /// <summary>
    /// Opens the cache of one volume: loads the checkpoint (or starts a new log), replays the log into
    /// the index, and starts the flusher and destager. With corruption found, the cache comes up read-only.
    /// </summary>
    public static WriteBackCache Open(string name, IBlockTarget backing, RingBuffer ring, CacheOptions options, CacheMode mode,
        ILogger logger, IActorRefFactory actors, IProgress<(long Done, long Total)>? progress = null, ILogMedium? medium = null)
    {
        if (ring.SlotCount < 2 * options.MaxBatchBlocks || ring.SlotCount * (long)BlockSize < 2L * (32 << 20))
            throw new ArgumentException("the ring must hold at least two batches and two maximum-size requests (64 MiB)");
        if ((options.MaxBatchBlocks + 1L) * BlockSize > options.SegmentSize)
            throw new ArgumentException($"a batch of {options.MaxBatchBlocks} blocks plus its header does not fit in a {options.SegmentSize}-byte log segment");
        Directory.CreateDirectory(options.LogDirectory);
        var checkpoint = Checkpoint.Load(options.LogDirectory);
        if (checkpoint is null)
        {
            checkpoint = Checkpoint.New();
            checkpoint.Save(options.LogDirectory);
        }
        medium ??= new SegmentFiles(options.LogDirectory, options.SegmentSize);
        var index = new BlockIndex(backing.Size >> BlockShift);
        var started = DateTime.UtcNow;
        var recovery = LogRecovery.Replay(medium, checkpoint, index, options.MaxBatchBlocks, progress);
        if (recovery.BatchesReplayed > 0)
            logger.LogInformation("volume {Name}: replayed {Batches} log batches ({Bytes} bytes) in {Elapsed:F2}s, {Blocks} blocks cached",
                name, recovery.BatchesReplayed, recovery.BytesReplayed, (DateTime.UtcNow - started).TotalSeconds, index.CachedBlocks);
        if (recovery.TornTail is not null) logger.LogWarning("volume {Name}: {TornTail}", name, recovery.TornTail);
        if (recovery.Corruption is not null)
            logger.LogError("volume {Name} is DEGRADED and read-only: {Corruption}. Blocks whose newest version is in the damaged record " +
                            "fail with EIO; everything else reads normally. Copy the data off (nbdcopy) and restore the volume from a replica or snapshot",
                name, recovery.Corruption);
        var cache = new WriteBackCache(name, backing, ring, medium, options, logger, checkpoint, index, recovery, mode);
        // Actor names carry a number so a volume reopened at once never collides with its predecessor's actors.
        var incarnation = Interlocked.Increment(ref _incarnations);
        cache._extentsActor = actors.ActorOf(ExtentsActor.Props(cache), $"extents-{Uri.EscapeDataString(name)}-{incarnation}");
        cache._flusherActor = actors.ActorOf(FlusherActor.Props(cache), $"flusher-{Uri.EscapeDataString(name)}-{incarnation}");
        cache._destagerActor = actors.ActorOf(DestagerActor.Props(cache), $"destager-{Uri.EscapeDataString(name)}-{incarnation}");
        return cache;
    }

    private static long _incarnations;

    public long Size => _backing.Size;

    public TargetCapabilities Capabilities =>
        _backing.Capabilities | TargetCapabilities.Trim | TargetCapabilities.FastZero |
        (_readOnlyReason is null ? 0 : TargetCapabilities.ReadOnly);

    public CacheMode Mode => _mode;
    public RecoveryResult Recovery { get; }
    public BlockIndex Index => _index;
    public Guid VolumeId => _volumeId;

    /// <summary>Why the volume refuses writes (corruption found by recovery), or null.</summary>
    public string? ReadOnlyReason => _readOnlyReason;

    public CacheStatistics Statistics => new()
    {
        BatchesWritten = Interlocked.Read(ref _batchesWritten),
        Syncs = Interlocked.Read(ref _syncs),
        BlocksDestaged = Interlocked.Read(ref _blocksDestaged),
        RingWaits = Interlocked.Read(ref _ringWaits),
        RetentionShrinks = Interlocked.Read(ref _retentionShrinks),
        CorruptRecords = Recovery.Corruption is null ? 0 : 1,
        TornTails = Recovery.TornTail is null ? 0 : 1,
        CachedBlocks = _index.CachedBlocks,
        LogBytes = Interlocked.Read(ref _tail) - Interlocked.Read(ref _horizon),
        Generation = Interlocked.Read(ref _generation),
        RingFreeSlots = _ring.FreeSlots,
        IndexBytes = _index.FootprintBytes,
        BackingFailure = _backingFailure,
        LogFailure = _logFailure?.Message,
    };

    private void ThrowIfReadOnly()
    {
        if (_readOnlyReason is { } reason) BlockThrow.Error(BlockError.ReadOnly, $"volume {_name} is read-only: {reason}");
    }

    // ---- writes -------------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        if (_mode != CacheMode.WriteBack)
        {
            await _backing.WriteAsync(offset, data, fua || _mode == CacheMode.WriteThrough, cancellationToken).ConfigureAwait(false);
            return;
        }
        var ticket = await AppendAsync(offset, data.Length, data, LogEntryType.Data, cancellationToken).ConfigureAwait(false);
        if (fua) await WaitDurableAsync(ticket).ConfigureAwait(false);
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) =>
        ZeroAsync(offset, length, LogEntryType.Trim, fastOnly: false, fua, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default) =>
        ZeroAsync(offset, length, mayDeallocate ? LogEntryType.Trim : LogEntryType.Zero, fastOnly, fua, cancellationToken);

    private async ValueTask ZeroAsync(long offset, long length, LogEntryType type, bool fastOnly, bool fua, CancellationToken ct)
    {
        ThrowIfReadOnly();
        if (_mode != CacheMode.WriteBack)
        {
            var durable = fua || _mode == CacheMode.WriteThrough;
            if (type == LogEntryType.Trim) await _backing.TrimAsync(offset, length, durable, ct).ConfigureAwait(false);
            else await _backing.WriteZeroesAsync(offset, length, mayDeallocate: false, fastOnly, durable, ct).ConfigureAwait(false);
            return;
        }
        var ticket = await AppendAsync(offset, length, ReadOnlyMemory<byte>.Empty, type, ct).ConfigureAwait(false);
        if (fua) await WaitDurableAsync(ticket).ConfigureAwait(false);
    }

    /// <summary>
    /// Puts one request into the ring and queues its log records under one hold of _append (so a crash
    /// never splits a request between records, and log order is the order writers take the lock), then
    /// has its extents' actors point the index at it. Returns its ticket (its place in log order) once it
    /// is visible to every reader. A trim/zero's whole blocks are one entry without data; a block it
    /// covers only in part is written as zero bytes merged with the block's content.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<long> AppendAsync(long offset, long length, ReadOnlyMemory<byte> data, LogEntryType type, CancellationToken ct)
    {
        var first = offset >> BlockShift;
        var count = (int)(((offset + length - 1) >> BlockShift) - first + 1);
        var end = offset + length;
        bool headPartial, tailPartial;
        int slotCount;
        if (type == LogEntryType.Data)
        {
            headPartial = (offset & (BlockSize - 1)) != 0;
            tailPartial = (end & (BlockSize - 1)) != 0;
            slotCount = count;
        }
        else
        {
            headPartial = (offset & (BlockSize - 1)) != 0 || length < BlockSize;
            tailPartial = count > 1 && (end & (BlockSize - 1)) != 0;
            slotCount = (headPartial ? 1 : 0) + (tailPartial ? 1 : 0);
        }
        var slots = slotCount == 0 ? null : ArrayPool<int>.Shared.Rent(slotCount);
        try
        {
            var deadline = DateTime.UtcNow + _options.RingWaitTimeout;
            var attempt = 0;
            while (true)
            {
                ThrowIfLogRefusesWrites();
                await EnsureExtentsAsync(first, count).ConfigureAwait(false);
                // Only a writer that found the ring full asks for a wake-up (and then tries once more, so none is missed).
                var space = attempt++ == 0 ? null : _ring.SpaceFreed;
                IndexWrite? sent = null;
                long ticket = 0;
                bool ready, missing;
                lock (_append)
                {
                    ready = ExtentsReadyLocked(first, count, headPartial || tailPartial, out missing);
                    if (ready && (slotCount == 0 || _ring.TryClaim(slots.AsSpan(0, slotCount))))
                    {
                        var entries = EntriesScratchLocked(count);
                        try
                        {
                            ticket = type == LogEntryType.Data
                                ? QueueDataLocked(offset, data.Span, first, slots.AsSpan(0, slotCount), entries)
                                : QueueZeroLocked(offset, end, first, type, headPartial, tailPartial, slots.AsSpan(0, slotCount), entries);
                        }
                        catch
                        {
                            // A partial block's old content could not be read (backing error): nothing was queued.
                            foreach (var slot in slots.AsSpan(0, slotCount)) _ring.Release(slot);
                            throw;
                        }
                        sent = SendIndexWriteLocked(first, entries);
                    }
                }
                if (sent is not null)
                {
                    WakeFlusher();
                    if (!sent.IsCompleted) await sent.AsValueTask().ConfigureAwait(false); // an extent was busy on another thread
                    FinishIndexWrite(sent);
                    return ticket;
                }
                if (!ready)
                {
                    // An extent was retired meanwhile (ensure it again), or is still applying an earlier
                    // write that this partial one must merge with (it takes microseconds).
                    attempt--;
                    if (DateTime.UtcNow > deadline)
                        throw new BlockTargetException(BlockError.Io, $"volume {_name}: an extent of the write stayed busy for {_options.RingWaitTimeout.TotalSeconds:F0}s");
                    if (!missing) await Task.Yield();
                    continue;
                }
                WakeFlusher();
                if (space is not null) await WaitForRingSpaceAsync(space, deadline, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            if (slots is not null) ArrayPool<int>.Shared.Return(slots);
        }
    }

    private ulong[] _entriesScratch = new ulong[256]; // guarded by _append

    private Span<ulong> EntriesScratchLocked(int count)
    {
        if (_entriesScratch.Length < count) _entriesScratch = new ulong[Math.Max(count, _entriesScratch.Length * 2)];
        return _entriesScratch.AsSpan(0, count);
    }

    /// <summary>A data write: one record, every block in a slot. Caller holds _append.</summary>
    private long QueueDataLocked(long offset, ReadOnlySpan<byte> data, long first, ReadOnlySpan<int> slots, Span<ulong> entries)
    {
        FillSlots(offset, data, first, slots);
        for (var i = 0; i < slots.Length; i++) entries[i] = BlockIndex.Encode(BlockLocation.Ring, slots[i]);
        return QueueLocked(first, slots.Length, LogEntryType.Data, slots);
    }

    /// <summary>
    /// A trim/zero: zero bytes for a partial first and last block, one entry without data for the whole
    /// ones between. Both partial blocks are merged before anything is queued, so a failed read leaves
    /// nothing half queued. Caller holds _append.
    /// </summary>
    private long QueueZeroLocked(long offset, long end, long first, LogEntryType type, bool headPartial, bool tailPartial,
        ReadOnlySpan<int> slots, Span<ulong> entries)
    {
        var last = first + entries.Length - 1;
        if (headPartial) FillZeroBytesLocked(offset, end, first, slots[0]);
        if (tailPartial) FillZeroBytesLocked(offset, end, last, slots[^1]);
        long ticket = 0;
        var wholeFirst = first;
        var wholeLast = last;
        if (headPartial)
        {
            ticket = QueueLocked(first, 1, LogEntryType.Data, slots[..1]);
            entries[0] = BlockIndex.Encode(BlockLocation.Ring, slots[0]);
            wholeFirst++;
        }
        if (tailPartial) wholeLast--;
        if (wholeFirst <= wholeLast)
        {
            ticket = QueueLocked(wholeFirst, (int)(wholeLast - wholeFirst + 1), type, []);
            entries[(int)(wholeFirst - first)..(int)(wholeLast - first + 1)].Fill(BlockIndex.UnloggedZero(ticket));
        }
        if (tailPartial)
        {
            ticket = QueueLocked(last, 1, LogEntryType.Data, slots[^1..]);
            entries[^1] = BlockIndex.Encode(BlockLocation.Ring, slots[^1]);
        }
        return ticket;
    }

    /// <summary>The block's current content with the zeroed range cleared, in its slot. Caller holds _append.</summary>
    private void FillZeroBytesLocked(long offset, long end, long block, int slot)
    {
        var blockStart = block << BlockShift;
        var destination = _ring.Slot(slot);
        ReadBlockLocked(block, destination);
        destination[(int)(Math.Max(offset, blockStart) - blockStart)..(int)(Math.Min(end, blockStart + BlockSize) - blockStart)].Clear();
    }

    /// <summary>Gives the request the next ticket (its place in log order) and queues it for the flusher. Caller holds _append.</summary>
    private long QueueLocked(long first, int count, LogEntryType type, ReadOnlySpan<int> slots)
    {
        var ticket = ++_appendedTicket;
        _pending.Enqueue(new PendingRecord(first, count, type, ticket, (_pendingSlotHead + _pendingSlotCount) % _pendingSlots.Length));
        foreach (var slot in slots) _pendingSlots[(_pendingSlotHead + _pendingSlotCount++) % _pendingSlots.Length] = slot;
        return ticket;
    }

    /// <summary>With a full log disk and the fail policy, writers get ENOSPC at once instead of waiting.</summary>
    private void ThrowIfLogRefusesWrites()
    {
        if (_logFailure is { Error: BlockError.NoSpace } full && _options.LogFullPolicy == LogFullPolicy.Fail)
            throw new BlockTargetException(BlockError.NoSpace, $"volume {_name}: the log disk is full ({full.Message}); retry when space returns");
    }

    /// <summary>Backpressure: waits until ring slots may have been freed, for at most the ring-wait timeout in total.</summary>
    private async ValueTask WaitForRingSpaceAsync(Task space, DateTime deadline, CancellationToken ct)
    {
        Interlocked.Increment(ref _ringWaits);
        var left = deadline - DateTime.UtcNow;
        if (left <= TimeSpan.Zero || await Task.WhenAny(space, Task.Delay(left, ct)).ConfigureAwait(false) != space)
        {
            ct.ThrowIfCancellationRequested();
            throw new BlockTargetException(BlockError.NoSpace,
                $"volume {_name}: no ring space for {_options.RingWaitTimeout.TotalSeconds:F0}s; the log cannot keep up ({_logFailure?.Message ?? "slow log disk"})");
        }
    }

    /// <summary>Copies a request into its slots, merging partial blocks with their current content. Caller holds _append.</summary>
    private void FillSlots(long offset, ReadOnlySpan<byte> data, long first, ReadOnlySpan<int> slots)
    {
        var end = offset + data.Length;
        for (var i = 0; i < slots.Length; i++)
        {
            var block = first + i;
            var blockStart = block << BlockShift;
            var destination = _ring.Slot(slots[i]);
            var from = Math.Max(offset, blockStart);
            var to = Math.Min(end, blockStart + BlockSize);
            if (to - from < BlockSize) ReadBlockLocked(block, destination); // read-modify-write of a partial block
            data.Slice((int)(from - offset), (int)(to - from)).CopyTo(destination[(int)(from - blockStart)..]);
        }
    }

    /// <summary>The current content of one block, read while holding _append (so no write of it can come in between).</summary>
    private void ReadBlockLocked(long block, Span<byte> destination)
    {
        // A block moves (ring -> log -> backing) at most a few times while we look; an entry that keeps
        // naming a free slot would be a broken index, reported rather than looped on.
        for (var attempt = 0; attempt < 1000; attempt++)
        {
            var entry = _index.Get(block);
            switch (BlockIndex.LocationOf(entry))
            {
                case BlockLocation.Ring:
                {
                    // The extent's actor frees the slot once it is logged (not under _append): hold it, then check it is still the block's.
                    var slot = (int)BlockIndex.ValueOf(entry);
                    if (!_ring.TryAddReference(slot)) continue;
                    try
                    {
                        if (_index.Get(block) != entry) continue;
                        _ring.Slot(slot).CopyTo(destination);
                        return;
                    }
                    finally
                    {
                        _ring.Release(slot);
                    }
                }
                case BlockLocation.Zero:
                    destination.Clear();
                    return;
                case BlockLocation.Log:
                    if (_medium.TryRead(BlockIndex.ValueOf(entry) << BlockShift, destination)) return;
                    continue; // destaged meanwhile: look again
                default:
                    var buffer = ArrayPool<byte>.Shared.Rent(BlockSize);
                    try
                    {
                        _backing.ReadAsync(block << BlockShift, buffer.AsMemory(0, BlockSize)).AsTask().GetAwaiter().GetResult();
                        buffer.AsSpan(0, BlockSize).CopyTo(destination);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                    return;
            }
        }
        throw new InvalidOperationException($"volume {_name}: the index entry of block {block} keeps naming a location that is gone");
    }

    // ---- flush --------------------------------------------------------------------------------

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_mode != CacheMode.WriteBack)
        {
            await _backing.FlushAsync(cancellationToken).ConfigureAwait(false);
            return;
        }
        long ticket;
        lock (_append) ticket = _appendedTicket;
        await WaitDurableAsync(ticket).ConfigureAwait(false);
    }

    /// <summary>Waits until every write up to <paramref name="ticket"/> is fdatasync'ed in the log (group commit with every other waiter).</summary>
    private Task WaitDurableAsync(long ticket)
    {
        TaskCompletionSource done;
        lock (_append)
        {
            if (Interlocked.Read(ref _durableTicket) >= ticket) return Task.CompletedTask;
            if (_flusherGone) return Task.FromException(new BlockTargetException(BlockError.ShuttingDown, $"volume {_name} is closed"));
            if (_logFailure is { } failure && (failure.Error != BlockError.NoSpace || _options.LogFullPolicy == LogFullPolicy.Fail))
                return Task.FromException(new BlockTargetException(failure.Error, $"volume {_name}: cannot make writes durable: {failure.Message}"));
            done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _flushWaiters.Add((ticket, done));
        }
        WakeFlusher();
        return done.Task;
    }

    // ---- reads --------------------------------------------------------------------------------

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var end = offset + destination.Length;
        var position = offset;
        while (position < end)
        {
            var block = position >> BlockShift;
            var within = (int)(position & (BlockSize - 1));
            var entry = _index.Get(block);
            var location = BlockIndex.LocationOf(entry);
            if (location == BlockLocation.Backing)
            {
                var runEnd = BackingRunEnd(block, end);
                if (IsDamaged(block, entry)) ThrowDamaged(block);
                await _backing.ReadAsync(position, destination.Slice((int)(position - offset), (int)(runEnd - position)), cancellationToken)
                    .ConfigureAwait(false);
                position = runEnd;
                continue;
            }
            if (location == BlockLocation.Log && within == 0 && end - position >= 2 * BlockSize)
            {
                // A run of blocks whose newest versions sit next to each other in the log (one write,
                // one batch) is one pread, not one per block: sequential reads of logged data.
                var logBlock = BlockIndex.ValueOf(entry);
                var maxRun = (int)Math.Min((end - position) >> BlockShift, MaxReadRunBlocks);
                var run = 1;
                while (run < maxRun && _index.Get(block + run) == BlockIndex.Encode(BlockLocation.Log, logBlock + run)) run++;
                if (run > 1)
                {
                    for (var b = 0; b < run; b++)
                        if (IsDamaged(block + b, entry)) ThrowDamaged(block + b);
                    if (!_medium.TryRead(logBlock << BlockShift, destination.Span.Slice((int)(position - offset), run << BlockShift))) continue;
                    position += (long)run << BlockShift;
                    continue;
                }
            }
            var take = (int)Math.Min(BlockSize - within, end - position);
            var target = destination.Span.Slice((int)(position - offset), take);
            if (!TryReadCachedBlock(block, entry, within, target)) continue; // the block moved: look it up again
            position += take;
        }
    }

    /// <summary>Where a run of blocks that are all on the backing ends (read as one I/O), from <paramref name="block"/> up to <paramref name="end"/>.</summary>
    private long BackingRunEnd(long block, long end)
    {
        var runEnd = Math.Min(end, (block + 1) << BlockShift);
        while (runEnd < end && _index.Get(runEnd >> BlockShift) == 0) runEnd = Math.Min(end, runEnd + BlockSize);
        return runEnd;
    }

    /// <summary>
    /// The read path without any wait: ring and logged zeroes from memory, log and backing only from the
    /// page cache. False (with the destination in any state) when some part needs the disk or the index
    /// moved under us; the caller then reads with <see cref="ReadAsync"/>.
    /// </summary>
    public bool TryReadWithoutWaiting(long offset, Span<byte> destination)
    {
        if (_readOnlyReason is not null) return false; // damaged blocks are checked on the slow path
        var end = offset + destination.Length;
        var position = offset;
        while (position < end)
        {
            var block = position >> BlockShift;
            var within = (int)(position & (BlockSize - 1));
            var entry = _index.Get(block);
            var location = BlockIndex.LocationOf(entry);
            if (location == BlockLocation.Backing)
            {
                var runEnd = BackingRunEnd(block, end);
                if (!_backing.TryReadWithoutWaiting(position, destination.Slice((int)(position - offset), (int)(runEnd - position)))) return false;
                position = runEnd;
                continue;
            }
            var take = (int)Math.Min(BlockSize - within, end - position);
            var target = destination.Slice((int)(position - offset), take);
            if (location == BlockLocation.Log)
            {
                if (!_medium.TryReadWithoutWaiting((BlockIndex.ValueOf(entry) << BlockShift) + within, target)) return false;
            }
            else if (!TryReadCachedBlock(block, entry, within, target)) return false;
            position += take;
        }
        return true;
    }

    /// <summary>Copies part of a cached block; false when the entry changed under us (flushed, destaged, rewritten).</summary>
    private bool TryReadCachedBlock(long block, ulong entry, int within, Span<byte> target)
    {
        switch (BlockIndex.LocationOf(entry))
        {
            case BlockLocation.Zero:
                target.Clear();
                return true;
            case BlockLocation.Ring:
            {
                var slot = (int)BlockIndex.ValueOf(entry);
                if (!_ring.TryAddReference(slot)) return false;
                try
                {
                    if (_index.Get(block) != entry) return false;
                    _ring.Slot(slot).Slice(within, target.Length).CopyTo(target);
                    return true;
                }
                finally
                {
                    _ring.Release(slot);
                }
            }
            case BlockLocation.Log:
                if (IsDamaged(block, entry)) ThrowDamaged(block);
                return _medium.TryRead((BlockIndex.ValueOf(entry) << BlockShift) + within, target);
            default:
                return false;
        }
    }

    /// <summary>True when the newest version of the block may be in a corrupt record found by recovery.</summary>
    private bool IsDamaged(long block, ulong entry)
    {
        if (_readOnlyReason is null || (!_allDamaged && _damagedBlocks is null)) return false;
        // Entries written after the damage (higher log addresses) are intact and newer.
        if (BlockIndex.LocationOf(entry) is BlockLocation.Log or BlockLocation.Zero && BlockIndex.ValueOf(entry) >= _damageAddressBlock)
            return false;
        return _allDamaged || _damagedBlocks!.Contains(block);
    }

    private void ThrowDamaged(long block) =>
        BlockThrow.Error(BlockError.Io, $"volume {_name}: block {block} may be in a corrupt log record and is not served: {_readOnlyReason}");

    public async ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents,
        CancellationToken cancellationToken = default)
    {
        // Uncached runs report what the backing says (holes stay holes); cached blocks are data, or zero for logged trims.
        var count = 0;
        var position = offset;
        var end = Math.Min(offset + length, Size);
        while (position < end && count < extents.Length)
        {
            var block = position >> BlockShift;
            var lastBlock = (end - 1) >> BlockShift;
            var cached = _index.NextCached(block, lastBlock + 1);
            if (cached > block)
            {
                var runEnd = Math.Min(end, cached << BlockShift);
                var n = await _backing.GetAllocationAsync(position, runEnd - position, extents[count..], cancellationToken).ConfigureAwait(false);
                var covered = 0L;
                for (var i = 0; i < n; i++) covered += extents.Span[count + i].Length;
                count = Merge(extents.Span, count, n);
                position += covered;
                if (covered == 0) break;
                continue;
            }
            var zero = BlockIndex.LocationOf(_index.Get(block)) == BlockLocation.Zero;
            var stop = block + 1;
            while (stop <= lastBlock && _index.Get(stop) != 0 && (BlockIndex.LocationOf(_index.Get(stop)) == BlockLocation.Zero) == zero) stop++;
            var runLength = Math.Min(end, stop << BlockShift) - position;
            extents.Span[count] = new AllocationExtent(runLength, zero ? AllocationState.Zero : AllocationState.Data);
            count = Merge(extents.Span, count, 1);
            position += runLength;
        }
        return Math.Max(count, 0);
    }

    /// <summary>Joins the <paramref name="added"/> extents after <paramref name="count"/> with their predecessor when the states match.</summary>
    private static int Merge(Span<AllocationExtent> extents, int count, int added)
    {
        var end = count + added;
        for (var i = count; i < end; i++)
        {
            if (count > 0 && extents[count - 1].State == extents[i].State)
                extents[count - 1] = extents[count - 1] with { Length = extents[count - 1].Length + extents[i].Length };
            else
                extents[count++] = extents[i];
        }
        return count;
    }

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        _backing.PrefetchAsync(offset, length, cancellationToken);

    // ---- modes --------------------------------------------------------------------------------

    /// <summary>
    /// Switches mode on the live volume. Leaving write-back drains first: every dirty block is flushed
    /// to the log and destaged to the backing, then writes go straight through.
    /// </summary>
    public async Task SetModeAsync(CacheMode mode)
    {
        if (mode == _mode) return;
        if (_mode == CacheMode.WriteBack) await DrainAsync().ConfigureAwait(false);
        lock (_append)
        {
            if (_mode == CacheMode.WriteBack && _pending.Count > 0)
                throw new InvalidOperationException("writes arrived while draining; retry the mode switch");
            _mode = mode;
        }
        _logger.LogInformation("volume {Name} is now {Mode}", _name, mode);
    }

    /// <summary>Flushes everything to the log, then destages the whole log to the backing regardless of retention.</summary>
    public async Task DrainAsync()
    {
        await FlushAsync().ConfigureAwait(false);
        var target = Interlocked.Read(ref _durableTail);
        Interlocked.Exchange(ref _drainTo, target);
        while (Interlocked.Read(ref _horizon) < target && _backingFailure is null)
        {
            WakeDestager();
            await Task.Delay(10).ConfigureAwait(false);
        }
        if (_backingFailure is { } failure)
        {
            Interlocked.Exchange(ref _drainTo, 0); // the drain is given up: retention applies again once the backing is back
            throw new BlockTargetException(BlockError.Io, $"volume {_name}: cannot drain to the backing: {failure}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_readOnlyReason is null && _logFailure is null) await FlushAsync().ConfigureAwait(false);
        }
        catch (BlockTargetException e)
        {
            _logger.LogError("volume {Name}: final flush failed: {Message}", _name, e.Message);
        }
        _stopping = true;
        // The flusher drains what is still pending; the destager finishes the step it is in.
        if (!_flusherGone) await StopActorAsync(_flusherActor, Signals.Stop.Instance).ConfigureAwait(false);
        if (!_destagerGone) await StopActorAsync(_destagerActor, Signals.Stop.Instance).ConfigureAwait(false);
        if (!_extentsGone) await StopActorAsync(_extentsActor, Signals.Stop.Instance).ConfigureAwait(false);
        _medium.Dispose();
        await _backing.DisposeAsync().ConfigureAwait(false);
    }

    private async Task StopActorAsync(IActorRef actor, object stop)
    {
        try
        {
            await actor.Ask(stop, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            _logger.LogWarning("volume {Name}: {Actor} did not stop within 30 s", _name, actor.Path.Name);
        }
    }

    private readonly record struct PendingRecord(long Block, int Count, LogEntryType Type, long Ticket, int FirstSlot);
}

/// <summary>A point-in-time view of a cache for status output and metrics.</summary>
public sealed record CacheStatistics
{
    public long CachedBlocks { get; init; }
    public long LogBytes { get; init; }
    public long Generation { get; init; }
    public int RingFreeSlots { get; init; }
    public long IndexBytes { get; init; }
    public long BatchesWritten { get; init; }
    public long Syncs { get; init; }
    public long BlocksDestaged { get; init; }
    public long RingWaits { get; init; }
    public long RetentionShrinks { get; init; }
    public long CorruptRecords { get; init; }
    public long TornTails { get; init; }
    public string? BackingFailure { get; init; }
    public string? LogFailure { get; init; }
}
