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
    private readonly Func<VolumeDefinition, IActorRefFactory, Volume> _open;
    private readonly IActorRef? _registry;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private Volume? _volume;

    public VolumeActor(VolumeDefinition definition, ExportCatalog catalog, Func<VolumeDefinition, IActorRefFactory, Volume> open, IActorRef? registry)
    {
        _definition = definition;
        _catalog = catalog;
        _open = open;
        _registry = registry;
        Receive<OpenVolume>(_ => Open());
        Receive<GetVolumeStatus>(_ => Sender.Tell(new VolumeStatus(_volume?.Definition ?? _definition, _volume is not null,
            _volume?.Generation ?? 0, _volume?.Cache?.Statistics, _volume?.Cache?.ReadOnlyReason)));
        ReceiveAsync<SetVolumeMode>(SetModeAsync);
        ReceiveAsync<CloseVolume>(async _ =>
        {
            await CloseAsync();
            Context.Stop(Self);
        });
    }

    /// <summary><paramref name="open"/> builds the stack; the cache's flusher, destager and extent actors become this actor's children.</summary>
    public static Props Props(VolumeDefinition definition, ExportCatalog catalog, Func<VolumeDefinition, IActorRefFactory, Volume> open, IActorRef? registry = null) =>
        Akka.Actor.Props.Create(() => new VolumeActor(definition, catalog, open, registry));

    private void Open()
    {
        if (_volume is not null)
        {
            Sender.Tell(new VolumeOpened(_definition.Name));
            return;
        }
        try
        {
            _volume = _open(_definition, Context);
            _catalog.Publish(_volume);
            _log.Info("volume {0} online: {1} {2} on {3}{4}", _definition.Name, ByteSize.Format(_definition.Size),
                VolumeSpec.FormatMode(_definition.Mode), _definition.BackingPath,
                _volume.Cache?.ReadOnlyReason is { } reason ? $" (DEGRADED, read-only: {reason})" : "");
            Sender.Tell(new VolumeOpened(_definition.Name));
        }
        catch (Exception e) when (e is BlockTargetException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            // Whatever stops the stack from opening (backing, log directory, settings) is reported, not thrown:
            // the node then exits with the message instead of waiting for an answer that never comes.
            _log.Error("volume {0} cannot come online: {1}", _definition.Name, e.Message);
            Sender.Tell(new VolumeOpenFailed(_definition.Name, e.Message));
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

    /// <summary>Withdraws the volume from the front, flushes it and closes the stack (while the cache's child actors still run).</summary>
    private async Task CloseAsync()
    {
        if (_volume is null) return;
        _catalog.Withdraw(_definition.Name);
        try
        {
            await _volume.FlushAsync();
        }
        catch (BlockTargetException e)
        {
            _log.Error("volume {0}: final flush failed: {1}", _definition.Name, e.Message);
        }
        await _volume.DisposeAsync();
        _volume = null;
        _log.Info("volume {0} closed: flushed, cache actors stopped", _definition.Name);
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

/// <summary>Closes the volume cleanly (flush, stop its cache actors) and then stops the actor; NodeService stops volume actors with it.</summary>
public sealed record CloseVolume
{
    public static readonly CloseVolume Instance = new();
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

public sealed record VolumeStatus(VolumeDefinition Definition, bool Online, long Generation, CacheStatistics? Cache, string? Degraded);

/// <summary>Switch a live volume between write-back and write-through (leaving write-back drains the cache first).</summary>
public sealed record SetVolumeMode(VolumeMode Mode);

public sealed record VolumeModeSet(string Name, VolumeMode Mode);

public sealed record VolumeModeRejected(string Name, string Reason);
