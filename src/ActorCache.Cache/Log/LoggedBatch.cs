namespace ActorCache.Cache;

/// <summary>
/// Receives every batch the log writes, in log order (DESIGN §4: replication ships log batches in the
/// format they were written in). <see cref="OnBatch"/> runs on the flusher's thread: it must not block,
/// only take note (or send a message carrying the batch, which holds no payload bytes, only ring slots)
/// and call <see cref="LoggedBatch.Release"/> exactly once when done with the data.
/// </summary>
public interface ILogSubscriber
{
    void OnBatch(LoggedBatch batch);
}

/// <summary>
/// One batch as it was written to the log: its header block (the exact bytes on disk), its entries, and
/// its data still in the ring slots it was written from, pinned until every subscriber has released it.
/// Pooled by the flusher; valid until the subscriber's <see cref="Release"/>.
/// </summary>
public sealed class LoggedBatch
{
    private readonly byte[] _headerBlock = GC.AllocateUninitializedArray<byte>(LogFormat.BlockSize);
    private readonly LogEntry[] _entries = new LogEntry[LogFormat.MaxEntries];
    private int[] _slots = new int[256];
    private RingBuffer _ring = null!;
    private RingLine _line = null!; // the volume's line its slots were claimed on
    private Action<LoggedBatch> _returnToPool = null!;
    private int _references;

    /// <summary>Log address of the header.</summary>
    public long Address { get; private set; }

    public BatchHeader Header { get; private set; }

    /// <summary>Every write up to this ticket is complete in the log once this batch is (0 when the batch only continues a large write).</summary>
    public long CompletedTicket { get; private set; }

    /// <summary>The header block exactly as written: magic, sequence, generation, time, entries and CRC.</summary>
    public ReadOnlySpan<byte> HeaderBlock => _headerBlock;

    public ReadOnlySpan<LogEntry> Entries => _entries.AsSpan(0, Header.EntryCount);

    /// <summary>Data block <paramref name="index"/> of the batch (entry order), in its ring slot.</summary>
    public ReadOnlySpan<byte> DataBlock(int index) => _ring.Slot(_slots[index]);

    internal int[] Slots => _slots;

    /// <summary>
    /// A copy of the batch that one subscriber made and the others may share (a replica link's frame payload: with two
    /// peers a batch is then copied once, not once per peer). Subscribers are called one after another on the flusher's
    /// thread, so the first one sets it and the next ones find it. The batch holds one reference on it and drops it with
    /// its own last reference, so a copy found here is alive until that subscriber's own <see cref="Release"/>.
    /// </summary>
    public IBatchCopy? SharedCopy { get; set; }

    internal void Begin(RingBuffer ring, RingLine line, long address, in BatchHeader header, ReadOnlySpan<byte> headerBlock, ReadOnlySpan<LogEntry> entries,
        long completedTicket, int subscribers, Action<LoggedBatch> returnToPool)
    {
        _ring = ring;
        _line = line;
        Address = address;
        Header = header;
        CompletedTicket = completedTicket;
        headerBlock.CopyTo(_headerBlock);
        entries.CopyTo(_entries);
        if (_slots.Length < header.DataBlocks) _slots = new int[Math.Max(header.DataBlocks, _slots.Length * 2)];
        _references = subscribers;
        _returnToPool = returnToPool;
        SharedCopy = null; // never another batch's bytes (its last release cleared it; this is for a release that went wrong)
    }

    /// <summary>The subscriber is done with the batch's data; the last one lets the ring reuse the slots.</summary>
    public void Release()
    {
        var left = Interlocked.Decrement(ref _references);
        if (left > 0) return;
        if (left < 0) throw new InvalidOperationException($"logged batch {Header.Sequence} released more often than it was handed out");
        _ring.ReleaseAll(_slots.AsSpan(0, Header.DataBlocks), _line);
        var copy = SharedCopy;
        SharedCopy = null;
        copy?.Release();
        _returnToPool(this);
    }
}

/// <summary>A reference-counted copy of a batch's bytes that a <see cref="LoggedBatch"/> carries for its subscribers (<see cref="LoggedBatch.SharedCopy"/>).</summary>
public interface IBatchCopy
{
    /// <summary>Drops one reference; the last one frees the copy.</summary>
    void Release();
}
