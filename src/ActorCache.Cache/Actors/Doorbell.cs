using Akka.Actor;

namespace ActorCache.Cache.Actors;

/// <summary>
/// How one actor is told there is work (writers telling the flusher about a queued write or a FLUSH,
/// the flusher telling the destager the log needs room): a burst of rings sends one
/// <see cref="Signals.Wake"/>, not one each. The actor answers the bell before it looks for work, so a
/// ring after that sends a new one.
/// </summary>
internal sealed class Doorbell
{
    private int _rung; // 1 while a Wake is on its way
    private IActorRef _actor = ActorRefs.Nobody;

    public void Attach(IActorRef actor) => _actor = actor;

    private long _rungAt; // Stopwatch timestamp of the ring that sent the Wake on its way

    public void Ring()
    {
        if (Interlocked.Exchange(ref _rung, 1) != 0) return;
        Volatile.Write(ref _rungAt, System.Diagnostics.Stopwatch.GetTimestamp());
        _actor.Tell(Signals.Wake.Instance);
    }

    /// <summary>
    /// Called by the actor before it looks for work: the next ring sends a new Wake. Returns when the
    /// answered ring came (a Stopwatch timestamp), or 0 when nobody rang.
    /// </summary>
    public long Answer()
    {
        // (A Tick can answer a ring whose timestamp is not written yet: then an older one is read. Rare, and only a statistic.)
        return Interlocked.Exchange(ref _rung, 0) == 1 ? Volatile.Read(ref _rungAt) : 0;
    }
}
