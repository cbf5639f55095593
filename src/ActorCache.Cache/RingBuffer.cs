using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// The node's RAM stage: one pinned allocation made at start, cut into 4 KiB slots. A slot holds one
/// block of an acknowledged write until the flusher has put it in the log. Slots are reference-counted
/// (the owning write's reference plus any read copying from it) and return to the free list at zero.
/// When no slot is free, writers wait: backpressure, never a dropped write.
/// </summary>
public sealed class RingBuffer
{
    public const int SlotSize = LogFormat.BlockSize;

    private readonly byte[] _memory;
    private readonly int[] _references;
    private readonly int[] _free;
    private int _freeCount;
    private readonly Lock _gate = new();
    private TaskCompletionSource? _space; // created only while a writer waits, so a release costs nothing otherwise

    public RingBuffer(long bytes)
    {
        if (bytes < 16 * SlotSize || bytes % SlotSize != 0 || bytes / SlotSize > int.MaxValue / 2)
            throw new ArgumentException($"ring size {bytes} must be a multiple of 4 KiB, at least 64 KiB");
        SlotCount = (int)(bytes / SlotSize);
        _memory = GC.AllocateArray<byte>((int)Math.Min(bytes, Array.MaxLength), pinned: true);
        _references = new int[SlotCount];
        _free = new int[SlotCount];
        for (var i = 0; i < SlotCount; i++) _free[i] = SlotCount - 1 - i;
        _freeCount = SlotCount;
    }

    public int SlotCount { get; }

    public int FreeSlots => Volatile.Read(ref _freeCount);

    public Span<byte> Slot(int slot) => _memory.AsSpan(slot * SlotSize, SlotSize);

    public ReadOnlyMemory<byte> SlotMemory(int slot) => _memory.AsMemory(slot * SlotSize, SlotSize);

    /// <summary>Consecutive slots as one writable piece of memory (a staged write receives its payload into them).</summary>
    public Memory<byte> SlotRun(int firstSlot, int count) => _memory.AsMemory(firstSlot * SlotSize, count * SlotSize);

    /// <summary>Takes <paramref name="count"/> free slots (each with one reference) or none; false when too few are free.</summary>
    public bool TryClaim(Span<int> slots)
    {
        lock (_gate)
        {
            if (_freeCount < slots.Length) return false;
            for (var i = 0; i < slots.Length; i++)
            {
                var slot = _free[--_freeCount];
                _references[slot] = 1;
                slots[i] = slot;
            }
            return true;
        }
    }

    /// <summary>Completes when slots may have been freed since it was fetched. Fetch it, try to claim once more, then wait.</summary>
    public Task SpaceFreed
    {
        get
        {
            lock (_gate) return (_space ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    /// <summary>Adds a reference to a slot that is in use (a reader copying from it); false if it is free.</summary>
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
}
