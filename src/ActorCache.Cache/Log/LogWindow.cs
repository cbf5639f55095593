namespace ActorCache.Cache;

/// <summary>
/// Where a volume's log starts and ends, published by its two owners for each other and for status:
/// the destager owns the horizon (everything before it is on the backing), the flusher owns the tail,
/// the durable tail, the seal and the capacity it may use. Each field has that one writer; anyone may read.
/// </summary>
internal sealed class LogWindow(long horizon, long tail, long capacity)
{
    private long _horizon = horizon, _tail = tail, _durableTail = tail, _capacity = capacity, _sealed;

    public long Horizon => Volatile.Read(ref _horizon);
    public long Tail => Volatile.Read(ref _tail);
    public long DurableTail => Volatile.Read(ref _durableTail);

    /// <summary>How many bytes of log the flusher may use now: the configured capacity, or less while the file system is full.</summary>
    public long Capacity => Volatile.Read(ref _capacity);

    /// <summary>
    /// No batch is written below this address any more (in this run): the flusher moved on to the next
    /// segment because a batch did not fit in the rest of the tail's. Once the horizon reaches the tail,
    /// the segments below the seal hold nothing needed and can be released.
    /// </summary>
    public long Sealed => Volatile.Read(ref _sealed);

    /// <summary>Log bytes not yet on the backing.</summary>
    public long Used => Tail - Horizon;

    public void SetHorizon(long horizon) => Volatile.Write(ref _horizon, horizon);
    public void SetTail(long tail) => Volatile.Write(ref _tail, tail);
    public void SetDurableTail(long tail) => Volatile.Write(ref _durableTail, tail);
    public void SetCapacity(long capacity) => Volatile.Write(ref _capacity, capacity);
    public void Seal(long address) => Volatile.Write(ref _sealed, address);
}
