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
    private long _reservedBy; // the waiting claim that holds the head of the line (0: none)
    private int _reserved; // the slots it waits for
    private object? _reservedFor; // the line it holds back
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

    /// <summary>A number that names one waiting claim for <see cref="TryClaim(Span{int}, long, object?)"/> and <see cref="Withdraw"/>; later ones are larger.</summary>
    public long NewClaimer() => Interlocked.Increment(ref _lastClaimer);

    /// <summary>
    /// Takes <paramref name="slots"/>.Length free slots or none. A claim that finds too few free, made by a waiting
    /// <paramref name="claimer"/> (not 0), holds the head of its <paramref name="line"/> (a volume's writes) if it is the
    /// oldest waiting: the slots it waits for are then out of reach of the line's other claims until it has them (or
    /// <see cref="Withdraw"/>s). Without that a large write (32 MiB: 8,192 slots) waits forever behind 4 KiB writers, which
    /// take each handful of slots the flusher frees, and fails with ENOSPC while they go on. Only its own line is held back:
    /// a volume whose log stalls must not stop the others (its queued writes keep their slots, so its large write may
    /// never have them).
    /// </summary>
    public bool TryClaim(Span<int> slots, long claimer, object? line = null)
    {
        var wake = false;
        try
        {
            lock (_gate)
            {
                var held = _reservedBy != 0 && _reservedBy != claimer && ReferenceEquals(_reservedFor, line) ? _reserved : 0;
                if (_freeCount - held < slots.Length)
                {
                    if (claimer != 0 && (_reservedBy == 0 || claimer < _reservedBy))
                    {
                        _reservedBy = claimer;
                        _reserved = slots.Length;
                        _reservedFor = line;
                    }
                    return false;
                }
                for (var i = 0; i < slots.Length; i++)
                {
                    var slot = _free[--_freeCount];
                    _references[slot] = 1;
                    slots[i] = slot;
                }
                if (_reservedBy == claimer && claimer != 0) wake = ClearReservationLocked();
                return true;
            }
        }
        finally
        {
            if (wake) WakeWaiters();
        }
    }

    /// <summary>A waiting claim gives up (timed out, cancelled, refused): it lets go of the head of the line if it held it.</summary>
    public void Withdraw(long claimer)
    {
        bool wake;
        lock (_gate) wake = _reservedBy == claimer && ClearReservationLocked();
        if (wake) WakeWaiters();
    }

    /// <summary>The claims held back by a reservation wait for the slots it no longer holds: wake them (no release may come).</summary>
    private bool ClearReservationLocked()
    {
        _reservedBy = 0;
        _reserved = 0;
        _reservedFor = null;
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
            // While a reservation holds its line back, a wake per freed slot would only wake claims that cannot succeed yet:
            // wake when it can, and every 64 slots for the other lines and the reservation's own progress.
            if (_space is not null && _freeCount >= Math.Min(64, SlotCount / 4) && (_reservedBy == 0 || _freeCount >= _reserved || (_freeCount & 63) == 0))
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
