using ActorCache.Blocks;
using Akka.Actor;
using Akka.Event;

namespace ActorCache.Volumes;

/// <summary>
/// Owns one volume's stack on this node: opens it, publishes it to the front, and on stop
/// withdraws it, flushes and closes it, so a stopping node leaves every acknowledged write durable.
/// </summary>
public sealed class VolumeActor : ReceiveActor
{
    private readonly VolumeDefinition _definition;
    private readonly ExportCatalog _catalog;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private Volume? _volume;

    public VolumeActor(VolumeDefinition definition, ExportCatalog catalog)
    {
        _definition = definition;
        _catalog = catalog;
        Receive<OpenVolume>(_ => Open());
        Receive<GetVolumeStatus>(_ => Sender.Tell(new VolumeStatus(_definition, _volume is not null, _volume?.Generation ?? 0)));
    }

    public static Props Props(VolumeDefinition definition, ExportCatalog catalog) =>
        Akka.Actor.Props.Create(() => new VolumeActor(definition, catalog));

    private void Open()
    {
        if (_volume is not null)
        {
            Sender.Tell(new VolumeOpened(_definition.Name));
            return;
        }
        try
        {
            var backing = FileBacking.Open(_definition.BackingPath, _definition.Size, create: false, _definition.ReadOnly);
            _volume = new Volume(_definition, backing);
            _catalog.Publish(_volume);
            _log.Info("volume {0} online: {1} {2} on {3}", _definition.Name, ByteSize.Format(_definition.Size),
                VolumeSpec.FormatMode(_definition.Mode), _definition.BackingPath);
            Sender.Tell(new VolumeOpened(_definition.Name));
        }
        catch (BlockTargetException e)
        {
            _log.Error("volume {0} cannot come online: {1}", _definition.Name, e.Message);
            Sender.Tell(new VolumeOpenFailed(_definition.Name, e.Message));
        }
    }

    protected override void PostStop()
    {
        if (_volume is null) return;
        _catalog.Withdraw(_definition.Name);
        try
        {
            _volume.FlushAsync().AsTask().GetAwaiter().GetResult();
        }
        catch (BlockTargetException e)
        {
            _log.Error("volume {0}: final flush failed: {1}", _definition.Name, e.Message);
        }
        _volume.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _volume = null;
    }
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

public sealed record VolumeStatus(VolumeDefinition Definition, bool Online, long Generation);
