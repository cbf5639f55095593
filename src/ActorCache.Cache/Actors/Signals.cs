using Akka.Event;

namespace ActorCache.Cache.Actors;

/// <summary>
/// The messages the flusher and destager actors understand: singletons, so a send allocates nothing.
/// One that arrives after its actor stopped (a tick or a wake-up already on its way) is no news: it is
/// dropped without a dead-letter warning.
/// </summary>
internal static class Signals
{
    /// <summary>There is work (writes queued, a FLUSH waiting, history due for destaging).</summary>
    public sealed class Wake : IDeadLetterSuppression
    {
        public static readonly Wake Instance = new();
    }

    /// <summary>Finish what is in hand, answer <see cref="Stopped"/>, stop.</summary>
    public sealed class Stop : IDeadLetterSuppression
    {
        public static readonly Stop Instance = new();
    }

    public sealed class Stopped : IDeadLetterSuppression
    {
        public static readonly Stopped Instance = new();
    }

    /// <summary>The periodic timer: commit or destage what is due even without a wake-up.</summary>
    public sealed class Tick : IDeadLetterSuppression
    {
        public static readonly Tick Instance = new();
    }

    /// <summary>The backoff after a failure is over: try again.</summary>
    public sealed class Retry : IDeadLetterSuppression
    {
        public static readonly Retry Instance = new();
    }
}

/// <summary>Doubling delay between retries of a failing disk, from <c>first</c> up to <c>max</c>.</summary>
internal struct Backoff
{
    private readonly TimeSpan _first, _max;
    private TimeSpan _next;

    public Backoff(TimeSpan first, TimeSpan max)
    {
        _first = _next = first;
        _max = max;
    }

    public TimeSpan Next()
    {
        var now = _next;
        _next = TimeSpan.FromTicks(Math.Min(_next.Ticks * 2, _max.Ticks));
        return now;
    }

    public void Reset() => _next = _first;
}
