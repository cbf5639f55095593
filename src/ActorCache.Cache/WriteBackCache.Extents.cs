using System.Threading.Tasks.Sources;
using ActorCache.Blocks;
using ActorCache.Cache.Actors;
using Akka.Actor;

namespace ActorCache.Cache;

/// <summary>
/// The index is owned extent by extent (DESIGN §3): every change to an extent's part of the index is
/// made by that extent's actor, in the order its messages arrive. Writers send under the append lock,
/// so an extent sees its writes in log order; the flusher and destager send about blocks that are
/// already cached, so the extent is alive. The extent table lets the write path find an extent's
/// actor without asking anyone; its <see cref="ExtentHandle.InFlight"/> count lets the supervisor
/// retire an idle clean extent knowing no message to it is on its way.
/// </summary>
public sealed partial class WriteBackCache
{
    private readonly ExtentHandle?[] _extentTable;
    private IActorRef _extentsActor = ActorRefs.Nobody;
    private volatile bool _extentsGone;
    private readonly Stack<IndexWrite> _indexWrites = new();
    private readonly List<IndexWrite> _allIndexWrites = [];
    private readonly Stack<LoggedBlocks> _loggedBlocks = new();

    internal ExtentHandle? ExtentAt(long extent) => Volatile.Read(ref _extentTable[extent]);

    /// <summary>Called by the extents actor for a new extent actor.</summary>
    internal void AddToExtentTable(ExtentHandle extent)
    {
        lock (_append) Volatile.Write(ref _extentTable[extent.Extent], extent);
    }

    /// <summary>Takes a clean, idle extent out of the table (and drops its index page) if nothing is on its way to it.</summary>
    internal bool TryRetireExtent(ExtentHandle extent)
    {
        lock (_append)
        {
            // Every sender counts its message in InFlight under this lock, so zero here means none is coming.
            if (Volatile.Read(ref extent.InFlight) != 0 || Volatile.Read(ref extent.Cached) != 0 || ExtentAt(extent.Extent) != extent) return false;
            Volatile.Write(ref _extentTable[extent.Extent], null);
            _index.ReleaseExtent(extent.Extent);
            return true;
        }
    }

    /// <summary>Live extent actors (for status and tests).</summary>
    public int ExtentActors => _extentTable.Count(e => e is not null);

    /// <summary>Makes sure every extent in [first, first + count) has an actor; usually they all do and nothing waits.</summary>
    private async ValueTask EnsureExtentsAsync(long first, long count)
    {
        var last = (first + count - 1) >> BlockIndex.ExtentBlocksShift;
        for (var e = first >> BlockIndex.ExtentBlocksShift; e <= last; e++)
            if (ExtentAt(e) is null) await CreateExtentAsync(e).ConfigureAwait(false);
    }

    private Task CreateExtentAsync(long extent)
    {
        if (_extentsGone) BlockThrow.Error(BlockError.ShuttingDown, $"volume {_name} is closed");
        return _extentsActor.Ask<ExtentHandle>(new ExtentsActor.Create(extent), _options.RingWaitTimeout);
    }

    /// <summary>For the flusher and destager: the extent's actor, counted in flight (creating it if it was retired). Not under _append.</summary>
    internal ExtentHandle AcquireExtent(long extent)
    {
        while (true)
        {
            lock (_append)
                if (TryAcquireLocked(extent) is { } acquired) return acquired;
            CreateExtentAsync(extent).GetAwaiter().GetResult();
        }
    }

    /// <summary>The extent's actor with one more message counted in flight, or null if it has none. Caller holds _append.</summary>
    private ExtentHandle? TryAcquireLocked(long extent)
    {
        var handle = ExtentAt(extent);
        if (handle is not null) Interlocked.Increment(ref handle.InFlight);
        return handle;
    }

    /// <summary>True when every extent of the range has an actor and, where a block is written only in part, no write of the extent is still being applied. Caller holds _append.</summary>
    private bool ExtentsReadyLocked(long first, int count, bool partialEnds, out bool missing)
    {
        missing = false;
        if (_extentsGone) BlockThrow.Error(BlockError.ShuttingDown, $"volume {_name} is closed");
        var last = (first + count - 1) >> BlockIndex.ExtentBlocksShift;
        for (var e = first >> BlockIndex.ExtentBlocksShift; e <= last; e++)
        {
            var handle = ExtentAt(e);
            if (handle is null)
            {
                missing = true;
                return false;
            }
            // A partial block is merged with its current content, which must include every earlier write.
            if (partialEnds && (e == first >> BlockIndex.ExtentBlocksShift || e == last) && Volatile.Read(ref handle.PendingWrites) != 0) return false;
        }
        return true;
    }

    /// <summary>
    /// Tells each extent of the write where its blocks are now (<paramref name="entries"/>, one per
    /// block from <paramref name="first"/>). Caller holds _append (that is what keeps log order), after
    /// <see cref="ExtentsReadyLocked"/>.
    /// </summary>
    private IndexWrite SendIndexWriteLocked(long first, ReadOnlySpan<ulong> entries)
    {
        IndexWrite write;
        lock (_indexWrites)
        {
            if (!_indexWrites.TryPop(out write!)) _allIndexWrites.Add(write = new IndexWrite());
        }
        var firstExtent = first >> BlockIndex.ExtentBlocksShift;
        var lastExtent = (first + entries.Length - 1) >> BlockIndex.ExtentBlocksShift;
        write.Begin(first, entries, (int)(lastExtent - firstExtent + 1));
        for (var e = firstExtent; e <= lastExtent; e++)
        {
            var handle = TryAcquireLocked(e)!;
            Interlocked.Increment(ref handle.PendingWrites);
            handle.Actor.Tell(write, ActorRefs.NoSender);
        }
        return write;
    }

    /// <summary>After the write is applied (<see cref="IndexWrite.IsCompleted"/>, or awaited): reports a failure and pools the object.</summary>
    private void FinishIndexWrite(IndexWrite write)
    {
        try
        {
            write.ThrowIfFailed();
        }
        finally
        {
            write.WaitUntilCompleted();
            write.Reset();
            lock (_indexWrites) _indexWrites.Push(write);
        }
    }

    /// <summary>
    /// The extents' actors are gone (the cache closed, or its actor system stopped): writes sent to
    /// them and not applied fail instead of waiting forever, and no new ones are sent.
    /// </summary>
    internal void OnExtentsStopped()
    {
        lock (_append) _extentsGone = true;
        lock (_indexWrites)
            foreach (var write in _allIndexWrites)
                write.TryFail(new BlockTargetException(BlockError.ShuttingDown, $"volume {_name} is closed"));
    }

    /// <summary>Run by the extent's actor: its blocks of the write now live in their ring slots (or are a trim/zero not yet logged).</summary>
    internal void ApplyWrite(ExtentHandle extent, IndexWrite write)
    {
        var extentFirst = extent.Extent << BlockIndex.ExtentBlocksShift;
        var from = Math.Max(write.First, extentFirst);
        var to = Math.Min(write.First + write.Count, extentFirst + BlockIndex.ExtentBlocks);
        for (var block = from; block < to; block++)
        {
            if (_index.Get(block) == 0) extent.Cached++;
            _index.Set(block, write.Entries[block - write.First]);
        }
    }

    /// <summary>Run by the extent's actor: the blocks are in the log now; the index points there and the slots go back to the ring.</summary>
    internal void ApplyLogged(LoggedBlocks logged)
    {
        for (var i = 0; i < logged.Count; i++)
        {
            var block = logged.First + i;
            // A newer write of the block wins; the log copy is then history.
            if (logged.Type == LogEntryType.Data)
                _index.Replace(block, BlockIndex.Encode(BlockLocation.Ring, logged.Slots[i]), BlockIndex.Encode(BlockLocation.Log, logged.LogBlock + i));
            else
                _index.Replace(block, BlockIndex.UnloggedZero(logged.Ticket), BlockIndex.Encode(BlockLocation.Zero, logged.LogBlock));
        }
        // Released last block first, the slots go back on the free stack so the next claim takes them
        // in ascending order: a staged write then receives into long runs of neighbouring slots.
        if (logged.Type == LogEntryType.Data)
            for (var i = logged.Count - 1; i >= 0; i--) _ring.Release(logged.Slots[i]);
    }

    /// <summary>The flusher's message for the part of a batch entry that falls in one extent.</summary>
    private LoggedBlocks RentLogged()
    {
        lock (_loggedBlocks) return _loggedBlocks.Count > 0 ? _loggedBlocks.Pop() : new LoggedBlocks();
    }

    internal void ReturnLogged(LoggedBlocks logged)
    {
        lock (_loggedBlocks) _loggedBlocks.Push(logged);
    }
}

/// <summary>
/// One extent actor as the rest of the cache sees it: its ref, and counters the write path and the
/// supervisor read. <see cref="Cached"/> is written only by the actor.
/// </summary>
internal sealed class ExtentHandle(long extent, int cached)
{
    public long Extent { get; } = extent;
    public IActorRef Actor { get; set; } = ActorRefs.Nobody;
    /// <summary>Messages sent (counted under the append lock) and not yet handled.</summary>
    public int InFlight;
    /// <summary>Writes sent and not yet applied: a partial-block write merges only once they are.</summary>
    public int PendingWrites;
    /// <summary>Blocks of the extent not on the backing.</summary>
    public int Cached = cached;
    /// <summary>Environment.TickCount64 when the actor last handled a message.</summary>
    public long LastUsed = Environment.TickCount64;

    /// <summary>Called by the actor at the end of every handler.</summary>
    public void Handled()
    {
        Volatile.Write(ref LastUsed, Environment.TickCount64);
        Interlocked.Decrement(ref InFlight);
    }
}

/// <summary>
/// A write's new index entries, sent to every extent it touches (pooled: one object per write in
/// flight, reused). The writer waits on it until each extent has applied its part.
/// </summary>
internal sealed class IndexWrite : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private ulong[] _entries = new ulong[256];
    private int _extentsLeft;
    private int _state; // 0 idle in the pool, 1 sent, 3 completing, 2 applied (or failed)
    private Exception? _failure;

    public long First { get; private set; }
    public int Count { get; private set; }
    /// <summary>The new index entry of each block from <see cref="First"/> on.</summary>
    public ulong[] Entries => _entries;
    public bool IsCompleted => Volatile.Read(ref _state) == 2;

    public void Begin(long first, ReadOnlySpan<ulong> entries, int extents)
    {
        if (_entries.Length < entries.Length) _entries = new ulong[Math.Max(entries.Length, _entries.Length * 2)];
        entries.CopyTo(_entries);
        First = first;
        Count = entries.Length;
        _extentsLeft = extents;
        Volatile.Write(ref _state, 1);
    }

    /// <summary>Called by each extent actor once it has applied its part.</summary>
    public void ExtentDone(Exception? failure)
    {
        if (failure is not null) Interlocked.CompareExchange(ref _failure, failure, null);
        if (Interlocked.Decrement(ref _extentsLeft) == 0) Complete();
    }

    /// <summary>The extents will never answer (their actors are gone).</summary>
    public void TryFail(Exception failure)
    {
        if (Volatile.Read(ref _state) != 1) return;
        Interlocked.CompareExchange(ref _failure, failure, null);
        Complete();
    }

    private void Complete()
    {
        // Applied only after SetResult: a writer that sees it resets the source and reuses the object
        // at once, and a SetResult landing after that would complete the next write early.
        if (Interlocked.CompareExchange(ref _state, 3, 1) != 1) return;
        _core.SetResult(true);
        Volatile.Write(ref _state, 2);
    }

    /// <summary>
    /// A writer woken by <see cref="Complete"/> can get here before the completing thread has marked
    /// the object done; resetting it before that would let the late mark complete the next write.
    /// </summary>
    public void WaitUntilCompleted()
    {
        var spin = new SpinWait();
        while (Volatile.Read(ref _state) != 2) spin.SpinOnce();
    }

    /// <summary>Awaited only when some extent was running on another thread; allocation-free (pooled source).</summary>
    public ValueTask AsValueTask() => new(this, _core.Version);

    public void ThrowIfFailed()
    {
        if (_failure is BlockTargetException { Error: BlockError.ShuttingDown } closed) throw closed;
        if (_failure is { } failure) throw new BlockTargetException(BlockError.Io, $"index update failed: {failure.Message}");
    }

    public void Reset()
    {
        _core.Reset();
        _failure = null;
        Volatile.Write(ref _state, 0);
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

/// <summary>The flusher's news for one extent: these blocks of one batch entry are in the log from <see cref="LogBlock"/> on (pooled).</summary>
internal sealed class LoggedBlocks
{
    private int[] _slots = new int[256];

    public long First { get; private set; }
    public int Count { get; private set; }
    public LogEntryType Type { get; private set; }
    /// <summary>The log block of the first data block, or the batch header's block for a trim/zero.</summary>
    public long LogBlock { get; private set; }
    /// <summary>The record's place in log order (names a trim/zero's index entry until it is logged).</summary>
    public long Ticket { get; private set; }
    public int[] Slots => _slots;

    public void Begin(long first, int count, LogEntryType type, long logBlock, long ticket)
    {
        if (type == LogEntryType.Data && _slots.Length < count) _slots = new int[Math.Max(count, _slots.Length * 2)];
        First = first;
        Count = count;
        Type = type;
        LogBlock = logBlock;
        Ticket = ticket;
    }
}
