using ActorCache.Blocks;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache.Actors;

/// <summary>
/// Drives destaging of one volume (DESIGN §3) through its <see cref="DestagePlanner"/>, which it owns:
/// step by step it plans due history, has the <see cref="DestageWriter"/> copy it to the backing,
/// fdatasyncs the backing, lets the append queue point the destaged blocks at the backing, and then
/// advances the horizon. It also answers the flusher's requests for room and drains. Backing failures
/// are retried with backoff; the data stays in the log.
/// </summary>
internal sealed class DestagerActor : ReceiveActor, IWithTimers
{
    /// <summary>From the flusher: the log is full; move the horizon to at least <paramref name="Horizon"/> (answered with <see cref="FlusherActor.SpaceFreed"/>).</summary>
    public sealed record MakeRoom(long Horizon);

    /// <summary>Destage everything up to <paramref name="Target"/> regardless of retention; <paramref name="Done"/> completes then, or fails with the backing.</summary>
    public sealed record Drain(long Target, TaskCompletionSource Done);

    /// <summary>
    /// Keep the sync point whose batch is <paramref name="Sequence"/> restorable from now on (a kept
    /// snapshot); answered true, or false when the destager has already passed it.
    /// </summary>
    public sealed record Protect(long Sequence, bool Kept, TaskCompletionSource<bool> Done);

    /// <summary>The blocks that may differ between two points (<paramref name="To"/> null: the live volume); see <see cref="DestagePlanner.ChangedBetween"/>.</summary>
    public sealed record Diff(long From, long? To, long Blocks, TaskCompletionSource<SortedSet<long>> Done);

    /// <summary>The blocks written after batch <paramref name="From"/>, one bit each; see <see cref="DestagePlanner.ChangedSince"/>.</summary>
    public sealed record ChangedSince(long From, int Blocks, TaskCompletionSource<System.Collections.BitArray> Done);

    /// <summary>Protect the sync point (as <see cref="Protect"/>) and build the index of the volume at it; answered with the index, or null when it is gone.</summary>
    public sealed record OpenView(long Sequence, long Blocks, TaskCompletionSource<BlockIndex?> Done);

    private readonly DestagerParts _parts;
    private readonly List<Drain> _drains = [];
    private IActorRef _roomWanted = ActorRefs.Nobody;
    private Backoff _backoff = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5));
    private bool _retryScheduled;
    private int _ticks;

    public DestagerActor(DestagerParts parts)
    {
        _parts = parts;
        ReceiveAsync<Signals.Wake>(_ => DestageAsync());
        ReceiveAsync<Signals.Tick>(_ =>
        {
            SweepIdlePages();
            return DestageAsync();
        });
        ReceiveAsync<Signals.Retry>(_ =>
        {
            _retryScheduled = false;
            return DestageAsync();
        });
        ReceiveAsync<MakeRoom>(m =>
        {
            _roomWanted = Sender;
            _parts.Planner.RequestRoom(m.Horizon);
            return DestageAsync();
        });
        ReceiveAsync<Drain>(m =>
        {
            _drains.Add(m);
            if (RefuseDrainsIfOff()) return Task.CompletedTask;
            _parts.Planner.RequestDrain(m.Target);
            return DestageAsync();
        });
        // Between steps (the mailbox waits while a step runs), so no step already planned passes the point.
        Receive<Protect>(m => m.Done.TrySetResult(_parts.Planner.TryProtect(m.Sequence, m.Kept)));
        Receive<OpenView>(m =>
        {
            var protectedHere = false;
            try
            {
                _parts.Planner.ThrowIfCopiesLost(m.Sequence);
                protectedHere = _parts.Planner.TryProtect(m.Sequence, kept: false);
                m.Done.TrySetResult(protectedHere ? _parts.Planner.IndexAt(m.Sequence, m.Blocks) : null);
            }
            catch (Exception e)
            {
                if (protectedHere) _parts.Space.Points.Remove(m.Sequence, kept: false);
                m.Done.TrySetException(e);
            }
        });
        Receive<Diff>(m =>
        {
            try
            {
                m.Done.TrySetResult(_parts.Planner.ChangedBetween(m.From, m.To, m.Blocks));
            }
            catch (Exception e)
            {
                m.Done.TrySetException(e);
            }
        });
        Receive<ChangedSince>(m =>
        {
            try
            {
                m.Done.TrySetResult(_parts.Planner.ChangedSince(m.From, m.Blocks));
            }
            catch (Exception e)
            {
                m.Done.TrySetException(e);
            }
        });
        Receive<Signals.Stop>(_ =>
        {
            Sender.Tell(Signals.Stopped.Instance);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(DestagerParts parts) => Akka.Actor.Props.Create(() => new DestagerActor(parts)).WithDispatcher(CacheDispatchers.Log);

    protected override void PreStart() => Timers.StartPeriodicTimer("destage", Signals.Tick.Instance, _parts.Options.DestageInterval);

    protected override void PostStop()
    {
        _parts.OnStopped();
        FailDrains(new BlockTargetException(BlockError.ShuttingDown, $"volume {_parts.Name} is closed"));
    }

    /// <summary>Answers every drain waiting here with <paramref name="reason"/>: it cannot finish.</summary>
    private void FailDrains(BlockTargetException reason)
    {
        foreach (var drain in _drains) drain.Done.TrySetException(reason);
        _drains.Clear();
    }

    /// <summary>
    /// A restart (after an unexpected exception) is not a stop: the planner and its horizon carry on. The drains waiting here
    /// would be lost with this instance, so they fail with the reason (the flusher's wish for room is asked again at its tick).
    /// </summary>
    protected override void PreRestart(Exception reason, object message)
    {
        FailDrains(new BlockTargetException(BlockError.Io, $"volume {_parts.Name}: the destager failed and restarted: {reason.Message}"));
    }

    /// <summary>
    /// Once destaging is off (the log is damaged: found at open, or by the scrub since, even mid-drain) no drain can finish: each
    /// waiting one fails with the reason, instead of waiting until the volume closes. True when destaging is off.
    /// </summary>
    private bool RefuseDrainsIfOff()
    {
        if (_parts.Allowed()) return false;
        FailDrains(new BlockTargetException(BlockError.ReadOnly,
            $"volume {_parts.Name}: destaging is off (its log is damaged); it cannot be drained: copy the data off"));
        return true;
    }

    private async Task DestageAsync()
    {
        _parts.Bell.Answer();
        if (_retryScheduled || RefuseDrainsIfOff()) return;
        var planner = _parts.Planner;
        try
        {
            while (planner.PlanStep() is { } plan)
            {
                // Copy-on-write: what a protected point still reads is made durable elsewhere before it is
                // overwritten, within the space kept snapshots may take.
                if (plan.Preserve.Count > 0) plan = _parts.Space.MakeRoomFor(plan);
                if (plan.Preserve.Count > 0) await _parts.Preserver.PreserveAsync(plan.Preserve, plan.LastSequence);
                planner.BeginWrite(plan);
                await _parts.Writer.WriteAsync(plan.Blocks);
                await _parts.Backing.FlushAsync(); // durable on the backing before any index entry or log segment lets go of it
                _parts.Queue.PublishDestaged(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(plan.Blocks));
                planner.Published(plan);
                _parts.Health.CountDestaged(plan.Blocks.Count);
                planner.Complete(plan);
                AnswerWaiters(spaceFreed: true);
                if (RefuseDrainsIfOff()) break;
            }
            RefuseDrainsIfOff(); // the plan stopped at a damaged record
            // Everything durable is destaged; a full log may still free the segment the flusher sealed.
            AnswerWaiters(spaceFreed: planner.RoomWanted && planner.ReleaseSealedSegments());
            BackingWorks();
            _backoff.Reset();
        }
        catch (Exception e) when (e is BlockTargetException or IOException or UnauthorizedAccessException)
        {
            OnBackingFailure(e as BlockTargetException ?? new BlockTargetException(BlockError.Io, e.Message));
            _retryScheduled = true;
            Timers.StartSingleTimer("retry", Signals.Retry.Instance, _backoff.Next());
        }
    }

    /// <summary>Tells the flusher it may have room (it checks for itself), and completes drains the horizon has passed.</summary>
    private void AnswerWaiters(bool spaceFreed)
    {
        if (!_roomWanted.IsNobody() && spaceFreed)
        {
            _roomWanted.Tell(FlusherActor.SpaceFreed.Instance);
            if (!_parts.Planner.RoomWanted) _roomWanted = ActorRefs.Nobody;
        }
        for (var i = _drains.Count - 1; i >= 0; i--)
        {
            if (!_parts.Planner.Drained(_drains[i].Target)) continue;
            _drains[i].Done.TrySetResult();
            _drains.RemoveAt(i);
        }
    }

    /// <summary>Every fourth of an idle timeout, index pages of extents left clean and untouched for the whole timeout are dropped.</summary>
    private void SweepIdlePages()
    {
        var sweepEvery = Math.Max(1, (int)(_parts.Options.ExtentIdleTimeout / 4 / _parts.Options.DestageInterval));
        if (++_ticks % sweepEvery == 0) _parts.Queue.DropIdlePages(idleSweeps: 4);
    }

    private void OnBackingFailure(BlockTargetException e)
    {
        if (_parts.Health.BackingFailure is null)
            _parts.Logger.LogError("volume {Name} DEGRADED: destaging to the backing failed: {Message}. The data stays in the log and is still served; " +
                                   "destaging is retried", _parts.Name, e.Message);
        _parts.Health.BackingFailure = e.Message;
        // A drain cannot finish without the backing: it is given up, and retention applies again once the backing is back.
        _parts.Planner.CancelDrain();
        FailDrains(new BlockTargetException(BlockError.Io, $"volume {_parts.Name}: cannot drain to the backing: {e.Message}"));
    }

    private void BackingWorks()
    {
        if (_parts.Health.BackingFailure is null) return;
        _parts.Logger.LogInformation("volume {Name}: the backing accepts writes again; destaging resumed", _parts.Name);
        _parts.Health.BackingFailure = null;
    }
}

/// <summary>What a destager actor works with.</summary>
internal sealed record DestagerParts(string Name, DestagePlanner Planner, DestageWriter Writer, BlockPreserver Preserver, SnapshotSpace Space,
    AppendQueue Queue, IBlockTarget Backing, CacheHealth Health, CacheOptions Options, ILogger Logger, Doorbell Bell, Func<bool> Allowed,
    Action OnStopped);
