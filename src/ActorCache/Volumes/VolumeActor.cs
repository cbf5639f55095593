using ActorCache.Blocks;
using ActorCache.Cache;
using Akka.Actor;
using Akka.Event;

namespace ActorCache.Volumes;

/// <summary>
/// Owns one volume's stack on this node: opens it (replaying its log), publishes it to the front,
/// switches its mode and grows it live, and on stop withdraws, flushes and closes it, so a stopping
/// node leaves every acknowledged write durable. A mode switch may drain a whole log: meanwhile the
/// actor still answers status (with the mode it is switching to) and keeps every other request until
/// the switch is done.
/// </summary>
public sealed class VolumeActor : ReceiveActor, IWithUnboundedStash
{
    private static readonly TimeSpan RecordTimeout = TimeSpan.FromSeconds(30);
    private VolumeDefinition _definition;
    private readonly ExportCatalog _catalog;
    private readonly Func<VolumeDefinition, IActorRefFactory, Task<Volume>> _open;
    private readonly IActorRef? _registry;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private Volume? _volume;
    private string? _offlineReason;
    private VolumeMode? _switchingTo;

    private readonly IVolumeObserver? _observer;

    public VolumeActor(VolumeDefinition definition, ExportCatalog catalog, Func<VolumeDefinition, IActorRefFactory, Task<Volume>> open, IActorRef? registry,
        IVolumeObserver? observer = null)
    {
        _observer = observer;
        _definition = definition;
        _catalog = catalog;
        _open = open;
        _registry = registry;
        Ready();
    }

    public IStash Stash { get; set; } = null!;

    private void Ready()
    {
        ReceiveAsync<OpenVolume>(_ => OpenAsync());
        Receive<GetVolumeStatus>(_ => Sender.Tell(Status()));
        Receive<SetVolumeMode>(StartModeSwitch);
        ReceiveAsync<GrowVolume>(GrowAsync);
        ReceiveAsync<CloseVolume>(async _ =>
        {
            var replyTo = Sender;
            var closed = await CloseAsync();
            replyTo.Tell(closed);
            Context.Stop(Self);
        });
    }

    /// <summary>While a mode switch runs: status is answered, everything else waits for the switch to end.</summary>
    private void Switching()
    {
        Receive<GetVolumeStatus>(_ => Sender.Tell(Status()));
        Receive<ModeSwitchEnded>(EndModeSwitch);
        ReceiveAny(_ => Stash.Stash());
    }

    /// <summary><paramref name="open"/> builds the stack; the cache's flusher, destager and extent actors become this actor's children.</summary>
    public static Props Props(VolumeDefinition definition, ExportCatalog catalog, Func<VolumeDefinition, IActorRefFactory, Task<Volume>> open,
        IActorRef? registry = null, IVolumeObserver? observer = null) =>
        Akka.Actor.Props.Create(() => new VolumeActor(definition, catalog, open, registry, observer));

    /// <summary>What the stack says about itself: the cache's statistics and generation, and why writes are refused, if they are.</summary>
    private VolumeStatus Status()
    {
        var status = _volume?.Status();
        var cache = status?.Find<CacheStatistics>();
        return new VolumeStatus(_volume?.Definition ?? _definition, _volume is not null, cache?.Generation ?? 0, cache, status?.ReadOnlyReason, _offlineReason,
            _switchingTo, _volume?.Io.Read());
    }

    /// <summary>Asynchronous: opening may replay a log and drain it (a volume leaving write-back), and the actor waits without blocking a thread.</summary>
    private async Task OpenAsync()
    {
        var replyTo = Sender;
        if (_volume is not null)
        {
            replyTo.Tell(new VolumeOpened(_definition.Name));
            return;
        }
        try
        {
            _volume = await _open(_definition, Context);
            _observer?.Opened(_volume); // before the front serves it: a secondary's export must never be writable
            _catalog.Publish(_volume);
            _log.Info("volume {0} online: {1} {2} on {3}{4}", _definition.Name, ByteSize.Format(_definition.Size),
                VolumeSpec.FormatMode(_definition.Mode), _definition.BackingPath,
                _volume.Status().ReadOnlyReason is { } reason ? $" (DEGRADED, read-only: {reason})" : "");
            replyTo.Tell(new VolumeOpened(_definition.Name));
        }
        catch (Exception e) when (e is BlockTargetException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            // Whatever stops the stack from opening (backing, log directory, settings) is reported, not thrown:
            // the volume stays offline with its reason (in /health and the metrics) and the node serves the others.
            _offlineReason = e.Message;
            _catalog.MarkOffline(_definition.Name, e.Message);
            _log.Error("volume {0} is OFFLINE: {1}", _definition.Name, e.Message);
            replyTo.Tell(new VolumeOpenFailed(_definition.Name, e.Message));
        }
    }

    /// <summary>
    /// Starts the switch off the mailbox (leaving write-back drains the log to the backing, which can
    /// take minutes) and answers status meanwhile. The volume's definition changes once, at the end of
    /// the switch (one reference written), so a status read meanwhile sees the old mode or the new one.
    /// </summary>
    private void StartModeSwitch(SetVolumeMode request)
    {
        var replyTo = Sender;
        if (_volume is null)
        {
            replyTo.Tell(new VolumeModeRejected(_definition.Name, "the volume is not online"));
            return;
        }
        _switchingTo = request.Mode;
        _volume.SetModeAsync(request.Mode).ContinueWith(
            switched => new ModeSwitchEnded(request.Mode, replyTo, switched.Exception?.GetBaseException()),
            TaskScheduler.Default).PipeTo(Self);
        Become(Switching);
    }

    private void EndModeSwitch(ModeSwitchEnded ended)
    {
        _switchingTo = null;
        if (ended.Failure is null)
        {
            _definition = _volume?.Definition ?? _definition;
            _registry?.Tell(new ChangeVolumeMode(_definition.Name, ended.Mode));
            ended.ReplyTo.Tell(new VolumeModeSet(_definition.Name, ended.Mode));
        }
        else
        {
            _log.Warning("volume {0}: switching to {1} failed: {2}", _definition.Name, VolumeSpec.FormatMode(ended.Mode), ended.Failure.Message);
            ended.ReplyTo.Tell(new VolumeModeRejected(_definition.Name, ended.Failure.Message));
        }
        Become(Ready);
        Stash.UnstashAll();
    }

    /// <summary>Grows the live volume (see <see cref="Volume.GrowAsync"/>) and publishes it again, so new connections negotiate the new size.</summary>
    private async Task GrowAsync(GrowVolume request)
    {
        var replyTo = Sender;
        if (_volume is null)
        {
            replyTo.Tell(new VolumeGrowRejected(_definition.Name, $"volume {_definition.Name} is offline{(_offlineReason is null ? "" : $": {_offlineReason}")}"));
            return;
        }
        var from = _volume.Definition.Size;
        try
        {
            await _volume.GrowAsync(request.Size, RecordSizeAsync);
        }
        catch (Exception e) when (e is InvalidOperationException or BlockTargetException or AskTimeoutException)
        {
            replyTo.Tell(new VolumeGrowRejected(_definition.Name, e.Message));
            return;
        }
        _definition = _volume.Definition;
        if (from != request.Size)
        {
            _catalog.Publish(_volume);
            _log.Info("volume {0} grew from {1} to {2}; connected clients see the new size when they reconnect", _definition.Name,
                ByteSize.Format(from), ByteSize.Format(request.Size));
        }
        replyTo.Tell(new VolumeGrown(_definition.Name, request.Size));

        async Task RecordSizeAsync()
        {
            if (_registry is null) return;
            var recorded = await _registry.Ask<object>(new ResizeVolume(_definition.Name, request.Size), RecordTimeout);
            if (recorded is VolumeRejected rejected) throw new InvalidOperationException(rejected.Reason);
        }
    }

    /// <summary>
    /// Withdraws the volume from the front, flushes it and closes the stack (while the cache's child
    /// actors still run), and says whether every acknowledged write is durable.
    /// </summary>
    private async Task<VolumeClosed> CloseAsync()
    {
        if (_volume is null) return new VolumeClosed(_definition.Name, 0, null);
        _catalog.Withdraw(_definition.Name);
        if (_observer is not null) await _observer.ClosingAsync(_definition.Name);
        // The stack makes every acknowledged write durable on its way down, or counts what it could not.
        var report = await _volume.CloseAsync();
        _volume = null;
        if (_observer is not null) await _observer.ClosedAsync(_definition.Name);
        var closed = new VolumeClosed(_definition.Name, report.NotDurableBytes, report.Problem);
        if (closed.IsDurable) _log.Info("volume {0} closed: flushed, cache actors stopped", _definition.Name);
        else _log.Error("volume {0} closed WITHOUT making every acknowledged write durable: {1}", _definition.Name, closed.Reason);
        return closed;
    }

    protected override void PostStop()
    {
        if (_volume is null) return;
        // Stopped without CloseVolume (e.g. the actor system went down): the children are gone, so
        // nothing more reaches the log. Acknowledged FLUSH/FUA writes are durable already; the rest is
        // what a crash would lose, and recovery replays the log at the next start.
        _catalog.Withdraw(_definition.Name);
        _observer?.ClosingAsync(_definition.Name).GetAwaiter().GetResult();
        _log.Warning("volume {0} stopped without being closed; the log is replayed at the next start", _definition.Name);
        _volume.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _volume = null;
        _observer?.ClosedAsync(_definition.Name).GetAwaiter().GetResult();
    }
}

/// <summary>
/// Closes the volume (flush, stop its cache actors), answers <see cref="VolumeClosed"/> and then stops
/// the actor; NodeService stops volume actors with it.
/// </summary>
public sealed record CloseVolume
{
    public static readonly CloseVolume Instance = new();
}

/// <summary>
/// The answer to <see cref="CloseVolume"/>: whether the volume made every acknowledged write durable.
/// <paramref name="NotDurableBytes"/> counts acknowledged bytes that reached neither the log nor the
/// backing (0 when all did, <see cref="UnknownBytes"/> when the loss is certain but not counted), and
/// <paramref name="Reason"/> says why.
/// </summary>
public sealed record VolumeClosed(string Name, long NotDurableBytes, string? Reason)
{
    public const long UnknownBytes = CloseReport.UnknownBytes;

    public bool IsDurable => NotDurableBytes == 0 && Reason is null;
}

public sealed record OpenVolume
{
    public static readonly OpenVolume Instance = new();
}

public sealed record VolumeOpened(string Name);

public sealed record VolumeOpenFailed(string Name, string Reason);

public sealed record GetVolumeStatus
{
    public static readonly GetVolumeStatus Instance = new();
}

/// <param name="Offline">Why the volume could not be opened (it is then not served), or null.</param>
/// <param name="SwitchingTo">The mode a switch under way is going to (leaving write-back drains the log first), or null.</param>
/// <param name="Io">Read and write requests since the volume was opened; null while it is not open.</param>
public sealed record VolumeStatus(VolumeDefinition Definition, bool Online, long Generation, CacheStatistics? Cache, string? Degraded, string? Offline = null,
    VolumeMode? SwitchingTo = null, VolumeIoTotals? Io = null);

/// <summary>Switch a live volume between write-back and write-through (leaving write-back drains the cache first).</summary>
public sealed record SetVolumeMode(VolumeMode Mode);

public sealed record VolumeModeSet(string Name, VolumeMode Mode);

public sealed record VolumeModeRejected(string Name, string Reason);

/// <summary>The end of a mode switch, sent by the switch to the actor that started it.</summary>
internal sealed record ModeSwitchEnded(VolumeMode Mode, IActorRef ReplyTo, Exception? Failure);

/// <summary>Grow the live volume to <paramref name="Size"/> bytes (only growing); answered with <see cref="VolumeGrown"/> or <see cref="VolumeGrowRejected"/>.</summary>
public sealed record GrowVolume(long Size);

public sealed record VolumeGrown(string Name, long Size);

public sealed record VolumeGrowRejected(string Name, string Reason);
