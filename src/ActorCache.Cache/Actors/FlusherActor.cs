using ActorCache.Blocks;
using Akka.Actor;

namespace ActorCache.Cache.Actors;

/// <summary>
/// The flusher actor owns the volume's log disk (DESIGN §3, §5): it is the only writer of the log.
/// Writers put their requests in the ring and the pending queue (log order) and wake it; it appends
/// batches, runs group commit for FLUSH/FUA waiters and commits on its own every second. It runs on a
/// thread of its own because pwritev and fdatasync block. A failing log is retried with backoff.
/// </summary>
internal sealed class FlusherActor : ReceiveActor, IWithTimers
{
    public sealed class Wake
    {
        public static readonly Wake Instance = new();
    }

    /// <summary>Drain what is pending, answer <see cref="Stopped"/>, stop.</summary>
    public sealed class Stop
    {
        public static readonly Stop Instance = new();
    }

    public sealed class Stopped
    {
        public static readonly Stopped Instance = new();
    }

    private sealed class Tick
    {
        public static readonly Tick Instance = new();
    }

    private sealed class Retry
    {
        public static readonly Retry Instance = new();
    }

    private static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(2);

    private readonly WriteBackCache _cache;
    private TimeSpan _backoff = FirstBackoff;
    private bool _retryScheduled;

    public FlusherActor(WriteBackCache cache)
    {
        _cache = cache;
        Receive<Wake>(_ => Work());
        Receive<Tick>(_ => Work());
        Receive<Retry>(_ =>
        {
            _retryScheduled = false;
            Work();
        });
        Receive<Stop>(_ =>
        {
            try
            {
                while (_cache.HasPendingWrites) _cache.FlushPending();
            }
            catch (BlockTargetException e)
            {
                _cache.OnLogFailure(e); // stopping: what is not in the log now is given up, as in a crash
            }
            Sender.Tell(Stopped.Instance);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(WriteBackCache cache) => Akka.Actor.Props.Create(() => new FlusherActor(cache)).WithDispatcher(CacheDispatchers.Log);

    protected override void PreStart() => Timers.StartPeriodicTimer("commit", Tick.Instance, TickInterval);

    protected override void PostStop() => _cache.OnFlusherStopped();

    private void Work()
    {
        if (_retryScheduled) return; // the log failed: wait for the retry instead of hammering it
        try
        {
            _cache.FlushPending();
            _backoff = FirstBackoff;
        }
        catch (BlockTargetException e)
        {
            _cache.OnLogFailure(e);
            _retryScheduled = true;
            Timers.StartSingleTimer("retry", Retry.Instance, _backoff);
            _backoff = TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }
}
