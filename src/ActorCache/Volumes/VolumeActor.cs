using ActorCache.Blocks;
using ActorCache.Cache;
using Akka.Actor;
using Akka.Event;

namespace ActorCache.Volumes;

/// <summary>
/// Owns one volume's stack on this node: opens it (replaying its log), publishes it to the front,
/// switches its mode live, and on stop withdraws, flushes and closes it, so a stopping node leaves
/// every acknowledged write durable.
/// </summary>
public sealed class VolumeActor : ReceiveActor
{
    private readonly VolumeDefinition _definition;
    private readonly ExportCatalog _catalog;
    private readonly Func<VolumeDefinition, IActorRefFactory, Task<Volume>> _open;
    private readonly IActorRef? _registry;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private Volume? _volume;
    private string? _offlineReason;

    public VolumeActor(VolumeDefinition definition, ExportCatalog catalog, Func<VolumeDefinition, IActorRefFactory, Task<Volume>> open, IActorRef? registry)
    {
        _definition = definition;
        _catalog = catalog;
        _open = open;
        _registry = registry;
        ReceiveAsync<OpenVolume>(_ => OpenAsync());
        Receive<GetVolumeStatus>(_ => Sender.Tell(Status()));
        ReceiveAsync<SetVolumeMode>(SetModeAsync);
        ReceiveAsync<CloseVolume>(async _ =>
        {
            var replyTo = Sender;
            var closed = await CloseAsync();
            replyTo.Tell(closed);
            Context.Stop(Self);
        });
    }

    /// <summary><paramref name="open"/> builds the stack; the cache's flusher, destager and extent actors become this actor's children.</summary>
    public static Props Props(VolumeDefinition definition, ExportCatalog catalog, Func<VolumeDefinition, IActorRefFactory, Task<Volume>> open,
        IActorRef? registry = null) =>
        Akka.Actor.Props.Create(() => new VolumeActor(definition, catalog, open, registry));

    /// <summary>What the stack says about itself: the cache's statistics and generation, and why writes are refused, if they are.</summary>
    private VolumeStatus Status()
    {
        var status = _volume?.Status();
        var cache = status?.Find<CacheStatistics>();
        return new VolumeStatus(_volume?.Definition ?? _definition, _volume is not null, cache?.Generation ?? 0, cache, status?.ReadOnlyReason, _offlineReason);
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

    private async Task SetModeAsync(SetVolumeMode request)
    {
        var replyTo = Sender;
        if (_volume is null)
        {
            replyTo.Tell(new VolumeModeRejected(_definition.Name, "the volume is not online"));
            return;
        }
        try
        {
            await _volume.SetModeAsync(request.Mode);
            _registry?.Tell(new ChangeVolumeMode(_definition.Name, request.Mode));
            replyTo.Tell(new VolumeModeSet(_definition.Name, request.Mode));
        }
        catch (Exception e) when (e is InvalidOperationException or BlockTargetException)
        {
            replyTo.Tell(new VolumeModeRejected(_definition.Name, e.Message));
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
        // The stack makes every acknowledged write durable on its way down, or counts what it could not.
        var report = await _volume.CloseAsync();
        _volume = null;
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
        _log.Warning("volume {0} stopped without being closed; the log is replayed at the next start", _definition.Name);
        _volume.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _volume = null;
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
public sealed record VolumeStatus(VolumeDefinition Definition, bool Online, long Generation, CacheStatistics? Cache, string? Degraded, string? Offline = null);

/// <summary>Switch a live volume between write-back and write-through (leaving write-back drains the cache first).</summary>
public sealed record SetVolumeMode(VolumeMode Mode);

public sealed record VolumeModeSet(string Name, VolumeMode Mode);

public sealed record VolumeModeRejected(string Name, string Reason);
