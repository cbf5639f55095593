using System.Buffers;
using System.Runtime.InteropServices;

namespace ActorCache.Cache;

/// <summary>
/// The node's RAM stage: one native allocation made at start, cut into 4 KiB slots. A slot holds one
/// block of an acknowledged write until the flusher has put it in the log (and every subscriber of the
/// log has let go of it). Slots are reference-counted (the owning write's reference plus any read
/// copying from it) and return to the free list at zero. When no slot is free, writers wait:
/// backpressure, never a dropped write.
/// </summary>
/// <remarks>
/// Native memory rather than a managed array: a managed array stops at 2 GiB, and slot offsets are
/// 64-bit here, so a ring may be as large as the machine allows. <see cref="Memory{T}"/> views (which
/// the socket and the log's gathered writes take) cannot be longer than 2 GiB either, so the memory is
/// seen as 1 GiB chunks: a run of slots handed out as one piece of memory never crosses a chunk end.
/// The memory lives as long as the process: a node's ring is never freed (no request can outlive it).
/// </remarks>
public sealed unsafe class RingBuffer
{
    public const int SlotSize = LogFormat.BlockSize;
    /// <summary>Slots per chunk of memory that one <see cref="Memory{T}"/> can cover (1 GiB).</summary>
    public const int ChunkSlotsShift = 18;
    /// <summary>The largest ring: slot numbers are ints and index entries keep them in 62 bits, so this is arbitrary but generous.</summary>
    public const long MaxBytes = 1L << 40;

    private readonly byte* _memory;
    private readonly Chunk[] _chunks;
    private readonly int[] _references;
    private readonly int[] _free;
    private int _freeCount;
    private readonly Lock _gate = new();
    private TaskCompletionSource? _space; // created only while a writer waits, so a release costs nothing otherwise
    private long _lastClaimer;

    public RingBuffer(long bytes)
    {
        if (bytes < 16 * SlotSize || bytes % SlotSize != 0)
            throw new ArgumentException($"ring size {bytes} must be a multiple of 4 KiB, at least 64 KiB");
        if (bytes > MaxBytes) throw new ArgumentException($"ring size {bytes} is above the largest supported ring ({MaxBytes} bytes, 1 TiB)");
        SlotCount = (int)(bytes / SlotSize);
        _memory = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, SlotSize);
        if (_memory is null) throw new OutOfMemoryException($"cannot allocate a ring of {bytes} bytes");
        var chunkCount = (SlotCount + (1 << ChunkSlotsShift) - 1) >> ChunkSlotsShift;
        _chunks = new Chunk[chunkCount];
        for (var c = 0; c < chunkCount; c++)
        {
            var slots = Math.Min(1 << ChunkSlotsShift, SlotCount - (c << ChunkSlotsShift));
            _chunks[c] = new Chunk(_memory + ((long)c << ChunkSlotsShift) * SlotSize, slots * SlotSize);
        }
        _references = new int[SlotCount];
        _free = new int[SlotCount];
        for (var i = 0; i < SlotCount; i++) _free[i] = SlotCount - 1 - i;
        _freeCount = SlotCount;
    }

    public int SlotCount { get; }

    public long Bytes => (long)SlotCount * SlotSize;

    public int FreeSlots => Volatile.Read(ref _freeCount);

    /// <summary>
    /// The most slots one volume's line may hold while no other line holds any: three quarters of the ring (see
    /// <see cref="ShareLocked"/>).
    /// </summary>
    public int MaxSlotsPerLine => SlotCount - SlotCount / 4;

    /// <summary>
    /// The most slots <paramref name="line"/> may hold now: three quarters of what it could reach, the free slots and its own (a
    /// claim is still let through when the line holds none). A volume whose log stalls (a full log waiting for a failing backing,
    /// say) keeps acknowledged writes in the ring; without a cap it took all of it, and every other volume's writes failed with
    /// ENOSPC after the ring wait. A fixed three quarters of the ring each still let two stalled volumes take all of it; this
    /// way each leaves a quarter of what it found free, so n of them leave a 4^n-th of the ring (a slot of a 256 MiB ring with
    /// eight; a volume whose log keeps up needs only a few to go on).
    /// </summary>
    private int ShareLocked(RingLine line)
    {
        var reach = _freeCount + line.Held;
        return reach - reach / 4;
    }

    public Span<byte> Slot(int slot) => new(_memory + (long)slot * SlotSize, SlotSize);

    public ReadOnlyMemory<byte> SlotMemory(int slot) => SlotRun(slot, 1);

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> lie in one chunk, so a run between them can be one piece of memory.</summary>
    public static bool InOneChunk(int a, int b) => a >> ChunkSlotsShift == b >> ChunkSlotsShift;

    /// <summary>Consecutive slots (within one chunk) as one writable piece of memory: a staged write receives its payload into them.</summary>
    public Memory<byte> SlotRun(int firstSlot, int count)
    {
        if (!InOneChunk(firstSlot, firstSlot + count - 1))
            throw new ArgumentException($"slots {firstSlot}..{firstSlot + count - 1} cross a ring chunk boundary");
        return _chunks[firstSlot >> ChunkSlotsShift].Memory.Slice((firstSlot & ((1 << ChunkSlotsShift) - 1)) * SlotSize, count * SlotSize);
    }

    /// <summary>Takes <paramref name="slots"/>.Length free slots (each with one reference) or none; false when too few are free.</summary>
    public bool TryClaim(Span<int> slots) => TryClaim(slots, 0);

    /// <summary>A number that names one waiting claim for <see cref="TryClaim(Span{int}, long, RingLine?)"/> and <see cref="Withdraw"/>; later ones are larger.</summary>
    public long NewClaimer() => Interlocked.Increment(ref _lastClaimer);

    /// <summary>
    /// Takes <paramref name="slots"/>.Length free slots or none. A claim that finds too few free, made by a waiting
    /// <paramref name="claimer"/> (not 0), holds the head of its <paramref name="line"/> (a volume's writes) if it is the
    /// line's oldest waiting claim: the slots it waits for are then out of reach of the line's other claims until it has
    /// them (or <see cref="Withdraw"/>s). Without that a large write (32 MiB: 8,192 slots) waits forever behind 4 KiB
    /// writers, which take each handful of slots the flusher frees, and fails with ENOSPC while they go on. Each line has
    /// its own head and holds back only itself: a volume whose log stalls keeps its slots (so its large write may never have
    /// them) and must not stop the others, so a line also holds at most its share of the ring (<see cref="ShareLocked"/>).
    /// </summary>
    public bool TryClaim(Span<int> slots, long claimer, RingLine? line = null)
    {
        var wake = false;
        try
        {
            lock (_gate)
            {
                var reserved = line is { ReservedBy: not 0 } && line.ReservedBy != claimer ? line.Reserved : 0;
                var room = _freeCount - reserved;
                if (line is { Held: > 0 }) room = Math.Min(room, ShareLocked(line) - line.Held - reserved);
                if (room < slots.Length)
                {
                    if (claimer != 0 && line is not null && (line.ReservedBy == 0 || claimer < line.ReservedBy))
                    {
                        // A reservation taken over may have held back claims that the new one does not: they try again.
                        wake = line.ReservedBy != 0 && _space is not null;
                        line.ReservedBy = claimer;
                        line.Reserved = slots.Length;
                    }
                    return false;
                }
                for (var i = 0; i < slots.Length; i++)
                {
                    var slot = _free[--_freeCount];
                    _references[slot] = 1;
                    slots[i] = slot;
                }
                if (line is not null) line.Held += slots.Length;
                if (claimer != 0 && line is not null && line.ReservedBy == claimer) wake = ClearLocked(line);
                return true;
            }
        }
        finally
        {
            if (wake) WakeWaiters();
        }
    }

    /// <summary>A waiting claim gives up (timed out, cancelled, refused): it lets go of the head of its line if it held it.</summary>
    public void Withdraw(long claimer, RingLine line)
    {
        bool wake;
        lock (_gate) wake = line.ReservedBy == claimer && ClearLocked(line);
        if (wake) WakeWaiters();
    }

    /// <summary>The claims a reservation held back wait for slots it no longer holds: they are woken (no release may come).</summary>
    private bool ClearLocked(RingLine line)
    {
        line.ReservedBy = 0;
        line.Reserved = 0;
        return _space is not null;
    }

    private void WakeWaiters()
    {
        TaskCompletionSource? wake;
        lock (_gate)
        {
            wake = _space;
            _space = null;
        }
        wake?.SetResult();
    }

    /// <summary>Completes when slots may have been freed since it was fetched. Fetch it, try to claim once more, then wait.</summary>
    public Task SpaceFreed
    {
        get
        {
            lock (_gate) return (_space ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    /// <summary>Adds a reference to a slot that is in use (a reader copying from it, a log subscriber); false if it is free.</summary>
    public bool TryAddReference(int slot)
    {
        while (true)
        {
            var current = Volatile.Read(ref _references[slot]);
            if (current == 0) return false;
            if (Interlocked.CompareExchange(ref _references[slot], current + 1, current) == current) return true;
        }
    }

    public void Release(int slot)
    {
        var left = Interlocked.Decrement(ref _references[slot]);
        if (left > 0) return;
        if (left < 0) throw new InvalidOperationException($"ring slot {slot} released more often than claimed");
        TaskCompletionSource? wake = null;
        lock (_gate)
        {
            _free[_freeCount++] = slot;
            if (_space is not null && _freeCount >= Math.Min(64, SlotCount / 4))
            {
                wake = _space;
                _space = null;
            }
        }
        wake?.SetResult();
    }

    /// <summary>
    /// Releases a batch's slots, last first (so the free stack hands them out again in ascending order: a staged write then
    /// receives into long runs of neighbouring slots), and wakes the waiting writers once for the batch, not once per slot
    /// (writers a reservation holds back would only fail and wait again). The slots were claimed on <paramref name="line"/>,
    /// which holds that many fewer from now on, even where a reader still holds one of them.
    /// </summary>
    public void ReleaseAll(ReadOnlySpan<int> slots, RingLine? line = null)
    {
        var freed = false;
        for (var i = slots.Length - 1; i >= 0; i--) freed |= Free(slots[i]);
        if (line is not null && slots.Length > 0)
        {
            lock (_gate) line.Held -= slots.Length;
            freed = true; // the line's writers waiting at its cap have room now
        }
        if (freed) WakeIfRoom();
    }

    /// <summary>Drops one reference; true when it was the last and the slot is free again.</summary>
    private bool Free(int slot)
    {
        var left = Interlocked.Decrement(ref _references[slot]);
        if (left > 0) return false;
        if (left < 0) throw new InvalidOperationException($"ring slot {slot} released more often than claimed");
        lock (_gate) _free[_freeCount++] = slot;
        return true;
    }

    private void WakeIfRoom()
    {
        TaskCompletionSource? wake = null;
        lock (_gate)
        {
            if (_space is not null && _freeCount >= Math.Min(64, SlotCount / 4))
            {
                wake = _space;
                _space = null;
            }
        }
        wake?.SetResult();
    }

    /// <summary>One chunk of the ring's native memory as a <see cref="Memory{T}"/> source; pinning is free (it never moves).</summary>
    private sealed class Chunk(byte* start, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(start, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(start + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}

/// <summary>
/// One volume's claims on the node's ring: where its oldest waiting write holds the head of the line, and how many slots
/// it holds (see <see cref="RingBuffer.TryClaim(Span{int}, long, RingLine?)"/>). Its fields are the ring's, under the ring's lock.
/// </summary>
public sealed class RingLine
{
    internal long ReservedBy; // the waiting claim that holds the head of the line (0: none)
    internal int Reserved; // the slots it waits for
    internal int Held; // slots claimed on the line and not yet released by their writes (at most its share: RingBuffer.ShareLocked)

    /// <summary>Slots this volume's writes hold now (claimed, not yet released after logging).</summary>
    public int HeldSlots => Volatile.Read(ref Held);
}
