using ActorCache.Blocks;
using System.Diagnostics;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache.Actors;

/// <summary>
/// The flusher actor owns the volume's log disk (DESIGN §3, §5) through its <see cref="LogAppender"/>:
/// it is the only writer of the log. Writers queue their records in log order and ring its doorbell; it
/// appends batches, writes sync points and runs group commit for the FLUSH/FUA waiters, and commits on
/// its own every commit interval. It never waits on another actor: when the log is full it asks the
/// destager for room and carries on when told <see cref="SpaceFreed"/> (or at its next tick). It runs
/// on a thread of its own because pwritev and fdatasync block. A failing log is retried with backoff.
/// </summary>
internal sealed class FlusherActor : ReceiveActor, IWithTimers
{
    /// <summary>From the destager: it moved the horizon; a full log may have room now.</summary>
    public sealed class SpaceFreed : Akka.Event.IDeadLetterSuppression
    {
        public static readonly SpaceFreed Instance = new();
    }

    private readonly string _name;
    private readonly LogAppender _appender;
    private readonly Doorbell _doorbell;
    private readonly IActorRef _destager;
    private readonly Doorbell _destagerBell;
    private readonly LogWindow _window;
    private readonly CacheHealth _health;
    private readonly DurabilityBarrier _barrier;
    private readonly CacheOptions _options;
    private readonly ILogger _logger;
    private readonly Action _onStopped;
    private readonly RepeatedLog _fullWarning;
    private Backoff _backoff = new(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(2));
    private bool _retryScheduled;
    private bool _full;
    private bool _stopping;

    public FlusherActor(FlusherParts parts)
    {
        (_name, _appender, _doorbell, _destager, _destagerBell, _window, _health, _barrier, _options, _logger, _onStopped) = parts;
        _fullWarning = new RepeatedLog(_logger, LogLevel.Warning);
        Receive<Signals.Wake>(_ => Work());
        Receive<Signals.Tick>(_ => Work());
        Receive<SpaceFreed>(_ => Work());
        Receive<Signals.Retry>(_ =>
        {
            _retryScheduled = false;
            Work();
        });
        Receive<Signals.Stop>(_ =>
        {
            // The volume flushed before it asked us to stop; whatever arrived since is written if the log
            // takes it. The destager is gone by now: nobody is asked for room or woken.
            _stopping = true;
            Work();
            Sender.Tell(Signals.Stopped.Instance);
            Context.Stop(Self);
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(FlusherParts parts) => Akka.Actor.Props.Create(() => new FlusherActor(parts)).WithDispatcher(CacheDispatchers.Log);

    protected override void PreStart() => Timers.StartPeriodicTimer("commit", Signals.Tick.Instance, _options.FlusherTick);

    protected override void PostStop() => _onStopped();

    /// <summary>A restart (after an unexpected exception) is not a stop: the appender and its waiters carry on with the new instance.</summary>
    protected override void PreRestart(Exception reason, object message)
    {
    }

    /// <summary>How long the flusher writes batches before it syncs for the FLUSHes waiting (when any are), should the queue not run dry first (the least; see Work).</summary>
    private static readonly long MaxWriteRunTicks = Stopwatch.Frequency / 500; // 2 ms

    private void Work()
    {
        var rungAt = _doorbell.Answer();
        if (_retryScheduled) return; // the log failed: wait for the retry instead of hammering it
        var syncs = _health.Syncs;
        var started = Stopwatch.GetTimestamp();
        try
        {
            _appender.RestoreCapacityIfDue();
            var outcome = AppendOutcome.Nothing;
            var syncDueAt = started + MaxWriteRunTicks;
            do
            {
                outcome = _appender.WriteBatch();
                if (outcome != AppendOutcome.Written || Stopwatch.GetTimestamp() < syncDueAt) continue;
                // Writes keep coming and the queue never runs dry: a FLUSH whose sync point is written is synced now, not
                // once the log is full, and the commit interval still bounds what a crash can take.
                Commit(rungAt, started);
                // Twice as long as the fdatasync took, within 2-20 ms: a slow disk's syncs take at most a third of the time, and a
                // FLUSH still waits no more than a few tens of milliseconds behind a stream of writes.
                syncDueAt = Stopwatch.GetTimestamp() + Math.Clamp(2 * _appender.LastSyncTicks, MaxWriteRunTicks, 10 * MaxWriteRunTicks);
            }
            while (outcome == AppendOutcome.Written);
            if (outcome == AppendOutcome.Nothing && _appender.SyncPointRecordWanted) outcome = _appender.WriteSyncPointRecord();
            if (outcome is AppendOutcome.LogFull or AppendOutcome.FileSystemFull)
            {
                // A FLUSH or FUA whose writes are in the log already needs only a 4 KiB sync-point record:
                // it may fit although the next batch does not, and then it does not wait for destaging.
                if (_appender.SyncPointRecordWanted) _appender.WriteSyncPointRecord();
                AskForRoom(outcome);
            }
            else
            {
                // Everything queued is in the log: an earlier failure is over before the waiters hear back.
                _full = false;
                LogWorks();
            }
            Commit(rungAt, started);
            if (_health.Syncs != syncs) WakeDestagerIfUrgent();
            _backoff.Reset();
        }
        catch (BlockTargetException e)
        {
            OnLogFailure(e);
            _retryScheduled = true;
            Timers.StartSingleTimer("retry", Signals.Retry.Instance, _backoff.Next());
        }
    }

    /// <summary>Group commit for the FLUSH/FUA waiters whose sync points are written (counted with the time since the ring and since work began), then the periodic commit.</summary>
    private void Commit(long rungAt, long started)
    {
        var written = Stopwatch.GetTimestamp();
        if (_appender.SyncForWaiters()) _health.CountCommit(rungAt == 0 ? 0 : started - rungAt, written - started, _appender.LastSyncTicks);
        _appender.CommitIfDue();
    }

    /// <summary>
    /// The log is full: what is written is made durable (the destager moves only durable history) and
    /// the destager is asked to move the horizon far enough, past retention if it must. Writers wait in
    /// the ring meanwhile; with a full file system and <c>log-full-policy = fail</c> they fail with ENOSPC.
    /// </summary>
    private void AskForRoom(AppendOutcome outcome)
    {
        if (_appender.HasUnsyncedWrites) _appender.Sync();
        if (!_stopping) _destager.Tell(new DestagerActor.MakeRoom(_appender.RoomNeeded), Self);
        if (!_full) _fullWarning.Log($"volume {_name}: the log is full ({_window.Used} of {_window.Capacity} bytes); writes wait while history is destaged to make room");
        _full = true;
        if (outcome == AppendOutcome.FileSystemFull && _options.LogFullPolicy == LogFullPolicy.Fail)
            OnLogFailure(new BlockTargetException(BlockError.NoSpace, $"the file system of {_options.LogDirectory} is full (No space left on device)"));
    }

    /// <summary>
    /// After a log sync the destager may have more durable history to move, but it is woken only when
    /// that is urgent (the log is past its retention cap): history that merely came due waits for the
    /// destager's tick. A wake-up per FLUSH cost the destager's thread a burst of spinning each time.
    /// </summary>
    private void WakeDestagerIfUrgent()
    {
        if (!_stopping && _window.Used > _options.RetentionCapBytesFor(_window.Capacity)) _destagerBell.Ring();
    }

    /// <summary>The log took every queued write: any earlier failure is over.</summary>
    private void LogWorks()
    {
        if (_health.LogFailure is null || _health.LogUntrusted is not null) return;
        _logger.LogInformation("volume {Name}: the log is writable again", _name);
        // The barrier first: whoever sees the failure cleared (a FLUSH after a health check) must not be refused with it.
        _barrier.Accept();
        _health.LogFailure = null;
    }

    private void OnLogFailure(BlockTargetException e)
    {
        var first = _health.LogFailure is null;
        _health.LogFailure = e;
        var waits = e.Error == BlockError.NoSpace && _options.LogFullPolicy == LogFullPolicy.Wait && _health.LogUntrusted is null;
        if (first)
            _logger.LogError("volume {Name}: log write failed: {Message}. Acknowledged writes stay in memory; {Policy}", _name, e.Message,
                waits ? "writers wait until space returns" : "FLUSH/FUA fail until the log is writable again");
        if (!waits) _barrier.Refuse(new BlockTargetException(e.Error, $"volume {_name}: cannot make writes durable: {e.Message}"));
    }
}

/// <summary>What a flusher actor works with: its appender and the parts it talks to.</summary>
internal sealed record FlusherParts(string Name, LogAppender Appender, Doorbell Doorbell, IActorRef Destager, Doorbell DestagerBell, LogWindow Window,
    CacheHealth Health, DurabilityBarrier Barrier, CacheOptions Options, ILogger Logger, Action OnStopped);
