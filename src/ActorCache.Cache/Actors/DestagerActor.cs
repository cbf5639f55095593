using ActorCache.Blocks;
using Akka.Actor;

namespace ActorCache.Cache.Actors;

/// <summary>
/// Drives destaging of one volume (DESIGN §3): step by step it reads due log history, hands each
/// extent's newest blocks to that extent's actor (created on demand, stopped when idle), fdatasyncs
/// the backing once every extent has written, lets the extent actors publish the new locations, and
/// then advances the horizon. Backing failures are retried with backoff; the data stays in the log.
/// </summary>
internal sealed class DestagerActor : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan ExtentIdle = TimeSpan.FromSeconds(30);

    private readonly WriteBackCache _cache;
    private readonly Dictionary<long, (IActorRef Actor, DateTime LastUsed)> _extents = [];
    private static long _incarnations; // across restarts too, so a new extent actor never takes a dying one's name
    private Backoff _backoff = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5));
    private bool _retryScheduled;

    public DestagerActor(WriteBackCache cache)
    {
        _cache = cache;
        ReceiveAsync<Signals.Wake>(_ => DestageAsync());
        ReceiveAsync<Signals.Tick>(async _ =>
        {
            await DestageAsync();
            StopIdleExtents();
        });
        ReceiveAsync<Signals.Retry>(_ =>
        {
            _retryScheduled = false;
            return DestageAsync();
        });
        Receive<Signals.Stop>(_ =>
        {
            Sender.Tell(Signals.Stopped.Instance);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(WriteBackCache cache) => Akka.Actor.Props.Create(() => new DestagerActor(cache)).WithDispatcher(CacheDispatchers.Log);

    protected override void PreStart() => Timers.StartPeriodicTimer("destage", Signals.Tick.Instance, _cache.Options.DestageInterval);

    protected override void PostStop() => _cache.OnDestagerStopped();

    /// <summary>A restart (after an unexpected exception) is not a stop: the extent actors go, the cache keeps its destager.</summary>
    protected override void PreRestart(Exception reason, object message)
    {
        foreach (var child in Context.GetChildren()) Context.Stop(child);
    }

    private async Task DestageAsync()
    {
        if (_retryScheduled) return;
        try
        {
            while (_cache.DestagingAllowed && _cache.PlanDestageStep() is { } plan)
            {
                await AllExtentsAsync(plan, (work, round) => new ExtentActor.WriteToBacking(work.Blocks, round));
                _cache.SyncBacking();
                await AllExtentsAsync(plan, (work, round) => new ExtentActor.Publish(work.Blocks, round));
                _cache.CompleteDestageStep(plan);
            }
            _cache.OnBackingWorks();
            _backoff.Reset();
        }
        catch (Exception e) when (e is BlockTargetException or IOException or UnauthorizedAccessException)
        {
            _cache.OnBackingFailure(e as BlockTargetException ?? new BlockTargetException(BlockError.Io, e.Message));
            _retryScheduled = true;
            Timers.StartSingleTimer("retry", Signals.Retry.Instance, _backoff.Next());
        }
    }

    /// <summary>Sends every extent of the step its part and waits until all have done it; the first failure fails the step.</summary>
    private async Task AllExtentsAsync(DestagePlan plan, Func<ExtentDestage, DestageRound, object> message)
    {
        var round = new DestageRound(plan.Extents.Count);
        var now = DateTime.UtcNow;
        foreach (var work in plan.Extents) ExtentActorFor(work.Extent, now).Tell(message(work, round));
        await round.Completion;
    }

    private IActorRef ExtentActorFor(long extent, DateTime now)
    {
        if (!_extents.TryGetValue(extent, out var known))
            known.Actor = Context.ActorOf(ExtentActor.Props(_cache), $"extent-{extent}-{Interlocked.Increment(ref _incarnations)}");
        _extents[extent] = (known.Actor, now);
        return known.Actor;
    }

    /// <summary>Extent actors live while their region has history to destage; idle ones go (between steps, so none has work).</summary>
    private void StopIdleExtents()
    {
        var cutoff = DateTime.UtcNow - ExtentIdle;
        foreach (var (extent, (actor, lastUsed)) in _extents)
        {
            if (lastUsed > cutoff) continue;
            Context.Stop(actor);
            _extents.Remove(extent);
        }
    }
}

/// <summary>Counts the extent actors of one destage step down to zero; carries the first failure.</summary>
internal sealed class DestageRound
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _left;
    private BlockTargetException? _failure;

    public DestageRound(int extents)
    {
        _left = extents;
        if (extents == 0) _done.SetResult();
    }

    public Task Completion => _done.Task;

    public void Done(BlockTargetException? failure)
    {
        if (failure is not null) Interlocked.CompareExchange(ref _failure, failure, null);
        if (Interlocked.Decrement(ref _left) != 0) return;
        if (_failure is { } first) _done.SetException(first);
        else _done.SetResult();
    }
}
