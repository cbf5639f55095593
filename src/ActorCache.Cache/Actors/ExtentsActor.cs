using Akka.Actor;

namespace ActorCache.Cache.Actors;

/// <summary>
/// Creates and retires a volume's extent actors (its children): one per extent while anything in the
/// extent is cached or being written. The cache's extent table is a lock-free copy of its children
/// for the write path; only this actor adds to it or removes from it. A clean extent that has been
/// idle for <see cref="CacheOptions.ExtentIdleTimeout"/> loses its actor and its index page.
/// </summary>
internal sealed class ExtentsActor : ReceiveActor, IWithTimers
{
    /// <summary>Answered with the extent's <see cref="ExtentHandle"/>, which is in the extent table by then.</summary>
    public sealed record Create(long Extent);

    private readonly WriteBackCache _cache;
    private static long _incarnations; // a new extent actor never takes the name of one still stopping

    public ExtentsActor(WriteBackCache cache)
    {
        _cache = cache;
        Receive<Create>(m =>
        {
            // The table is the one list of live extent actors (it survives a restart of this actor).
            var extent = cache.ExtentAt(m.Extent);
            if (extent is null)
            {
                extent = new ExtentHandle(m.Extent, cache.Index.CachedBlocksIn(m.Extent));
                extent.Actor = Context.ActorOf(ExtentActor.Props(cache, extent), $"extent-{m.Extent}-{Interlocked.Increment(ref _incarnations)}");
                cache.AddToExtentTable(extent);
            }
            Sender.Tell(extent);
        });
        Receive<Signals.Tick>(_ => RetireIdle());
        Receive<Signals.Stop>(_ =>
        {
            Sender.Tell(Signals.Stopped.Instance);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>On the default dispatcher: its timer scans every extent, which must not run on the scheduler's thread.</summary>
    public static Props Props(WriteBackCache cache) => Akka.Actor.Props.Create(() => new ExtentsActor(cache));

    protected override void PreStart()
    {
        var idle = _cache.Options.ExtentIdleTimeout;
        Timers.StartPeriodicTimer("retire", Signals.Tick.Instance, idle / 4 > TimeSpan.Zero ? idle / 4 : TimeSpan.FromMilliseconds(100));
    }

    protected override void PostStop() => _cache.OnExtentsStopped();

    /// <summary>A restart (after an unexpected exception) keeps the children and the table as they are.</summary>
    protected override void PreRestart(Exception reason, object message)
    {
    }

    private void RetireIdle()
    {
        var cutoff = Environment.TickCount64 - (long)_cache.Options.ExtentIdleTimeout.TotalMilliseconds;
        for (long e = 0; e < _cache.Index.ExtentCount; e++)
            if (_cache.ExtentAt(e) is { } extent && Volatile.Read(ref extent.LastUsed) <= cutoff && _cache.TryRetireExtent(extent))
                Context.Stop(extent.Actor);
    }
}
