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
    private static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(200);

    private readonly WriteBackCache _cache;
    private Backoff _backoff = new(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(2));
    private bool _retryScheduled;

    public FlusherActor(WriteBackCache cache)
    {
        _cache = cache;
        Receive<Signals.Wake>(_ => Work());
        Receive<Signals.Tick>(_ => Work());
        Receive<Signals.Retry>(_ =>
        {
            _retryScheduled = false;
            Work();
        });
        Receive<Signals.Stop>(_ =>
        {
            try
            {
                while (_cache.HasPendingWrites) _cache.FlushPending();
            }
            catch (BlockTargetException e)
            {
                _cache.OnLogFailure(e); // stopping: what is not in the log now is given up, as in a crash
            }
            Sender.Tell(Signals.Stopped.Instance);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(WriteBackCache cache) => Akka.Actor.Props.Create(() => new FlusherActor(cache)).WithDispatcher(CacheDispatchers.Log);

    protected override void PreStart() => Timers.StartPeriodicTimer("commit", Signals.Tick.Instance, TickInterval);

    protected override void PostStop() => _cache.OnFlusherStopped();

    /// <summary>A restart (after an unexpected exception) is not a stop: waiters keep waiting for the new instance.</summary>
    protected override void PreRestart(Exception reason, object message)
    {
    }

    private void Work()
    {
        if (_retryScheduled) return; // the log failed: wait for the retry instead of hammering it
        try
        {
            _cache.FlushPending();
            _backoff.Reset();
        }
        catch (BlockTargetException e)
        {
            _cache.OnLogFailure(e);
            _retryScheduled = true;
            Timers.StartSingleTimer("retry", Signals.Retry.Instance, _backoff.Next());
        }
    }
}
