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

    public void Ring()
    {
        if (Interlocked.Exchange(ref _rung, 1) == 0) _actor.Tell(Signals.Wake.Instance);
    }

    /// <summary>Called by the actor before it looks for work: the next ring sends a new Wake.</summary>
    public void Answer() => Interlocked.Exchange(ref _rung, 0);
}
