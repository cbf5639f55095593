using ActorCache.Blocks;
using Akka.Actor;

namespace ActorCache.Cache.Actors;

/// <summary>
/// Drives destaging of one volume (DESIGN §3): step by step it reads due log history, hands each
/// extent's newest blocks to that extent's actor, fdatasyncs the backing once every extent has
/// written, lets the extent actors publish the new locations, and then advances the horizon.
/// Backing failures are retried with backoff; the data stays in the log.
/// </summary>
internal sealed class DestagerActor : ReceiveActor, IWithTimers
{
    private readonly WriteBackCache _cache;
    private Backoff _backoff = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5));
    private bool _retryScheduled;

    public DestagerActor(WriteBackCache cache)
    {
        _cache = cache;
        ReceiveAsync<Signals.Wake>(_ => DestageAsync());
        ReceiveAsync<Signals.Tick>(_ => DestageAsync());
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

    /// <summary>A restart (after an unexpected exception) is not a stop: the cache keeps its destager.</summary>
    protected override void PreRestart(Exception reason, object message)
    {
    }

    private async Task DestageAsync()
    {
        if (_retryScheduled) return;
        try
        {
            while (_cache.DestagingAllowed && _cache.PlanDestageStep() is { } plan)
            {
                await AllExtentsAsync(plan, (extent, work, round) => new ExtentActor.WriteToBacking(extent, work.Blocks, round));
                _cache.SyncBacking();
                await AllExtentsAsync(plan, (extent, work, round) => new ExtentActor.PublishDestaged(extent, work.Blocks, round));
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
    private async Task AllExtentsAsync(DestagePlan plan, Func<ExtentHandle, ExtentDestage, DestageRound, object> message)
    {
        var round = new DestageRound(plan.Extents.Count);
        foreach (var work in plan.Extents)
        {
            var extent = _cache.AcquireExtent(work.Extent);
            extent.Actor.Tell(message(extent, work, round));
        }
        await round.Completion;
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
