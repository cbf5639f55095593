using System.Threading.Tasks.Sources;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Group commit's finish line (DESIGN §2, §4). A FLUSH or FUA waits here with its ticket (its place in
/// log order) until a sync point covering it is durable for every participant: the local log always,
/// and whoever else joins (a replicator adds "this peer has it durably" for protocol C). Participants
/// say how far they have the log durably by batch sequence number, so a sync point closes only once
/// its own batch (a sync-point record too) is durable everywhere. Then its generation is closed: it
/// enters the <see cref="LogHistory"/> and every waiter it covers completes. One fdatasync (and one
/// acknowledgement per peer) serves every waiter.
/// </summary>
/// <remarks>
/// The flusher writes sync points (<see cref="SyncPointWritten"/>) and advances the local participant;
/// writers add waiters; other participants advance themselves. A small lock guards it all; nothing in
/// it blocks. Waiters are completed outside it, on the thread that made the sync point durable (the
/// flusher after its fdatasync). A waiter whose caller allowed it (<see cref="InlineReply"/>: an NBD
/// FLUSH or FUA, whose continuation only sends the reply) may run its continuation right there: the last
/// such one does, the others are handed to the pool so they go on in parallel. At queue depth 1 a
/// commit then costs no thread hop between the fdatasync and the reply. Every other waiter continues
/// on the pool (RunContinuationsAsynchronously), so no caller's code runs on the flusher unasked. Only
/// the local log's progress (the flusher's thread) runs one inline: a peer's acknowledgement or a
/// participant leaving may come from code holding its own lock (a replicator's), and a FLUSH's
/// continuation that takes that lock, or another replicator's, would deadlock there.
/// A waiter is a pooled <see cref="Waiter"/> (a ValueTask source), so a commit allocates nothing: at
/// queue depth 1 (a database's write + FLUSH) every second request is one.
/// </remarks>
public sealed class DurabilityBarrier
{
    private readonly Lock _gate = new();
    private readonly List<Waiter> _waiters = [];
    private readonly Lock _spareGate = new();
    private readonly Stack<Waiter> _spares = new(); // waiters whose FLUSH has seen its result, for the next ones
    private readonly Queue<(long Ticket, SyncPoint Point)> _written = new(); // sync points written, with the tickets they cover
    private readonly List<Participant> _participants = [];
    private readonly LogHistory _history;
    private readonly Action<long>? _flushTimed;
    private long _closedTicket;
    private long _closedGeneration;
    private BlockTargetException? _refusal;

    /// <param name="flushTimed">Told each timed wait's ticks (<see cref="WaitAsync"/>), from its arrival until its caller runs again.</param>
    public DurabilityBarrier(LogHistory history, long lastClosedGeneration, long durableSequence, Action<long>? flushTimed = null)
    {
        _history = history;
        _flushTimed = flushTimed;
        _closedGeneration = lastClosedGeneration;
        Local = Join("local log", durableSequence);
    }

    /// <summary>The local log: durable through a batch once the flusher's fdatasync covers it.</summary>
    public Participant Local { get; }

    /// <summary>The newest closed generation (0 when none has been closed yet).</summary>
    public long ClosedGeneration
    {
        get
        {
            lock (_gate) return _closedGeneration;
        }
    }

    /// <summary>Every ticket up to this one is covered by a closed sync point.</summary>
    public long ClosedTicket
    {
        get
        {
            lock (_gate) return _closedTicket;
        }
    }

    /// <summary>Adds a participant that has the log durably through batch <paramref name="durableSequence"/>; waiters now also wait for it.</summary>
    public Participant Join(string name, long durableSequence)
    {
        var participant = new Participant(this, name, durableSequence);
        lock (_gate) _participants.Add(participant);
        return participant;
    }

    /// <summary>A participant leaves (a peer disconnected): waiters no longer wait for it.</summary>
    public void Leave(Participant participant)
    {
        if (participant == Local) throw new InvalidOperationException("the local log cannot leave the durability barrier");
        lock (_gate) _participants.Remove(participant);
        CloseWhatIsDurable(mayRunInline: false);
    }

    /// <summary>Completes once a sync point covering <paramref name="ticket"/> is durable for every participant.</summary>
    /// <param name="arrived">
    /// A FLUSH's arrival (a <see cref="System.Diagnostics.Stopwatch"/> timestamp), or 0: a timed wait reports its time once
    /// its caller reads the result, so the time includes handing the completion back, as the caller sees it.
    /// </param>
    /// <remarks>The result must be awaited (or read) exactly once: that hands its waiter back for reuse.</remarks>
    public ValueTask WaitAsync(long ticket, long arrived = 0)
    {
        // Taken before the barrier's lock, so the two locks are never held together.
        var waiter = Rent();
        BlockTargetException? refusal = null;
        lock (_gate)
        {
            // A ticket closed already is durable, whatever the log refuses now.
            if (ticket > _closedTicket)
            {
                refusal = _refusal;
                if (refusal is null)
                {
                    // Completed outside the lock either way (see the remarks).
                    var wait = waiter.Start(ticket, InlineReply.Allowed, arrived);
                    _waiters.Add(waiter);
                    return wait;
                }
            }
        }
        Return(waiter);
        if (refusal is not null) return ValueTask.FromException(refusal);
        if (arrived != 0) _flushTimed?.Invoke(System.Diagnostics.Stopwatch.GetTimestamp() - arrived);
        return ValueTask.CompletedTask;
    }

    /// <summary>True when a waiter's ticket lies in (<paramref name="after"/>, <paramref name="upTo"/>]: a batch completing those tickets must be a sync point.</summary>
    public bool HasWaiterIn(long after, long upTo)
    {
        if (upTo <= after) return false;
        lock (_gate)
        {
            foreach (var waiter in _waiters)
                if (waiter.Ticket > after && waiter.Ticket <= upTo) return true;
            return false;
        }
    }

    /// <summary>True while some waiter is not covered by a closed sync point.</summary>
    public bool HasWaiters
    {
        get
        {
            lock (_gate) return _waiters.Count > 0;
        }
    }

    /// <summary>The flusher wrote a sync point covering every ticket up to <paramref name="ticket"/>; it closes once every participant has it durably.</summary>
    internal void SyncPointWritten(long ticket, SyncPoint point)
    {
        lock (_gate) _written.Enqueue((ticket, point));
        CloseWhatIsDurable(mayRunInline: true);
    }

    /// <summary>
    /// From now on new waiters fail at once with <paramref name="refusal"/>, and every current one fails
    /// with it (the log refuses writes under the fail policy, or the volume closed).
    /// </summary>
    internal void Refuse(BlockTargetException refusal)
    {
        List<Waiter> refused;
        lock (_gate)
        {
            _refusal = refusal;
            refused = [.. _waiters];
            _waiters.Clear();
        }
        // Outside the lock and on the pool: a continuation must never run under the lock, nor on the thread refusing.
        foreach (var waiter in refused) ThreadPool.UnsafeQueueUserWorkItem(static s => s.Waiter.Fail(s.Refusal), (Waiter: waiter, Refusal: refusal), false);
    }

    /// <summary>Waiters are accepted again (the log works again).</summary>
    internal void Accept()
    {
        lock (_gate) _refusal = null;
    }

    private void Advance(Participant participant, long sequence)
    {
        lock (_gate)
        {
            if (sequence <= participant.DurableSequence) return;
            participant.DurableSequence = sequence;
        }
        CloseWhatIsDurable(mayRunInline: participant == Local);
    }

    [ThreadStatic] private static List<(Waiter Waiter, bool Inline)>? t_completing;

    /// <param name="mayRunInline">The caller is the flusher, holding no lock of anyone's: the last waiter allowed inline may run here.</param>
    private void CloseWhatIsDurable(bool mayRunInline)
    {
        var completing = t_completing ??= [];
        lock (_gate)
        {
            var durable = long.MaxValue;
            foreach (var participant in _participants) durable = Math.Min(durable, participant.DurableSequence);
            var closed = false;
            while (_written.TryPeek(out var next) && next.Point.Sequence <= durable)
            {
                _written.Dequeue();
                _closedTicket = next.Ticket;
                _closedGeneration = next.Point.Generation;
                _history.Add(next.Point);
                closed = true;
            }
            if (!closed) return;
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Ticket > _closedTicket) continue;
                completing.Add((_waiters[i], _waiters[i].Inline));
                _waiters.RemoveAt(i);
            }
        }
        // Waiters that continue on the pool anyway are completed here; of those allowed inline, the last runs
        // here and the others go to the pool (see the remarks). A waiter's own fields are not read once it is
        // completed: its FLUSH may already have handed it back for reuse.
        Waiter? last = null;
        foreach (var (waiter, inline) in completing)
        {
            if (!inline) waiter.Succeed();
            else
            {
                if (last is not null) ThreadPool.UnsafeQueueUserWorkItem(last, preferLocal: false);
                last = waiter;
            }
        }
        completing.Clear();
        if (last is null) return;
        if (!mayRunInline)
        {
            ThreadPool.UnsafeQueueUserWorkItem(last, preferLocal: false);
            return;
        }
        using (InlineReply.Run()) last.Succeed();
    }

    private Waiter Rent()
    {
        lock (_spareGate) return _spares.TryPop(out var waiter) ? waiter : new Waiter(this);
    }

    private void Return(Waiter waiter)
    {
        lock (_spareGate)
            if (_spares.Count < MaxSpares) _spares.Push(waiter);
    }

    private const int MaxSpares = 256; // more waiters than this at once are rare (a deep queue's FLUSHes): they are dropped after use

    /// <summary>
    /// One FLUSH or FUA waiting for its ticket to close: the source of the ValueTask it awaits. Reused: it goes
    /// back to the barrier's spares once its result has been read (<see cref="GetResult"/>), and the version of its
    /// core tells a stale ValueTask from the current one.
    /// </summary>
    private sealed class Waiter(DurabilityBarrier barrier) : IValueTaskSource, IThreadPoolWorkItem
    {
        private ManualResetValueTaskSourceCore<bool> _core;

        public long Ticket { get; private set; }

        /// <summary>Its continuation may run on the thread that completes it (<see cref="InlineReply"/>).</summary>
        public bool Inline { get; private set; }

        private long _arrived;

        public ValueTask Start(long ticket, bool inline, long arrived)
        {
            Ticket = ticket;
            Inline = inline;
            _arrived = arrived;
            _core.RunContinuationsAsynchronously = !inline;
            return new ValueTask(this, _core.Version);
        }

        public void Succeed() => _core.SetResult(true);

        public void Fail(Exception refusal) => _core.SetException(refusal);

        /// <summary>A waiter allowed inline, completed on the pool instead (not the last of a group commit, or not on the flusher).</summary>
        void IThreadPoolWorkItem.Execute() => Succeed();

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        public void GetResult(short token)
        {
            // A stale token or a result read before it is there is a caller's bug; it must not recycle a waiter that is
            // someone else's now, or still waits.
            if (token != _core.Version) throw new InvalidOperationException("a durability wait was awaited twice");
            if (_core.GetStatus(token) == ValueTaskSourceStatus.Pending) throw new InvalidOperationException("a durability wait was read before it completed");
            try
            {
                _core.GetResult(token);
                if (_arrived != 0) barrier._flushTimed?.Invoke(System.Diagnostics.Stopwatch.GetTimestamp() - _arrived);
            }
            finally
            {
                _core.Reset();
                barrier.Return(this);
            }
        }
    }

    /// <summary>One party whose durability every FLUSH waits for; it says how far it has everything durably.</summary>
    public sealed class Participant
    {
        private readonly DurabilityBarrier _barrier;

        internal Participant(DurabilityBarrier barrier, string name, long durableSequence)
        {
            _barrier = barrier;
            Name = name;
            DurableSequence = durableSequence;
        }

        public string Name { get; }

        /// <summary>Every batch up to this sequence number is durable here. Guarded by the barrier's lock.</summary>
        public long DurableSequence { get; internal set; }

        /// <summary>Every batch up to <paramref name="sequence"/> is durable here now.</summary>
        public void Advance(long sequence) => _barrier.Advance(this, sequence);
    }
}
