using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Nbd;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Hosting;

/// <summary>
/// Brings the node's storage up once the actor system runs: reconciles the requested volumes with the
/// registry, starts a volume actor per volume and then the NBD front. Stops in the reverse order.
/// </summary>
public sealed class NodeService(
    NodeSettings settings,
    ActorSystem system,
    ActorRegistry registry,
    ExportCatalog catalog,
    RingBuffer ring,
    ILoggerFactory loggerFactory) : IHostedService
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);
    private readonly ILogger _logger = loggerFactory.CreateLogger<NodeService>();
    // Replaced, never changed in place: the admin listener reads it from request threads.
    private volatile IReadOnlyList<VolumeActorRef> _volumeActors = [];
    private NbdServer? _server;

    public NbdServer? Server => _server;

    /// <summary>The volume actors this node runs (each answers <see cref="GetVolumeStatus"/>); complete once the node has started.</summary>
    public IReadOnlyList<VolumeActorRef> VolumeActors => _volumeActors;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var volumeRegistry = await registry.GetAsync<VolumeRegistry>(cancellationToken);
        var known = (await volumeRegistry.Ask<VolumeList>(GetVolumes.Instance, AskTimeout, cancellationToken)).Volumes;

        var wanted = settings.Volumes.Count == 0 && known.Count == 0 ? [settings.DefaultVolume] : settings.Volumes;
        // Asking for an existing volume in another mode switches it (leaving write-back drains the log first).
        var volumes = known.Select(v => wanted.FirstOrDefault(w => w.Name == v.Name) is { } w && w.Mode != v.Mode ? SwitchMode(volumeRegistry, v, w.Mode) : v).ToList();
        volumes.AddRange(await DefineNewVolumesAsync(volumeRegistry, known, wanted, cancellationToken));

        foreach (var definition in volumes)
        {
            var actor = system.ActorOf(VolumeActor.Props(definition, catalog,
                (d, actors) => VolumeStack.Open(d, settings.Cache, ring, loggerFactory, actors), volumeRegistry), $"volume-{definition.Name}");
            _volumeActors = [.. _volumeActors, new VolumeActorRef(definition.Name, actor)];
            var reply = await actor.Ask<object>(OpenVolume.Instance, AskTimeout, cancellationToken);
            if (reply is VolumeOpenFailed failed)
                throw new SettingsException($"volume {failed.Name} cannot come online: {failed.Reason}");
        }

        _server = new NbdServer(catalog, settings.Nbd, loggerFactory.CreateLogger<NbdServer>());
        try
        {
            _server.Start();
        }
        catch (InvalidOperationException e)
        {
            throw new SettingsException(e.Message);
        }
        _logger.LogInformation("node serving {Count} volume(s): {Volumes}", volumes.Count,
            string.Join(", ", volumes.Select(v => $"{v.Name} ({ByteSize.Format(v.Size)}, {VolumeSpec.FormatMode(v.Mode)})")));
    }

    private VolumeDefinition SwitchMode(IActorRef volumeRegistry, VolumeDefinition volume, VolumeMode mode)
    {
        _logger.LogInformation("volume {Name}: mode {From} -> {To}", volume.Name, VolumeSpec.FormatMode(volume.Mode), VolumeSpec.FormatMode(mode));
        volumeRegistry.Tell(new ChangeVolumeMode(volume.Name, mode));
        return volume with { Mode = mode };
    }

    /// <summary>
    /// Creates the backings of volumes the registry does not know yet and records them. All or nothing:
    /// if any backing cannot be prepared, the ones created here are removed before the error is reported.
    /// </summary>
    private async Task<List<VolumeDefinition>> DefineNewVolumesAsync(IActorRef volumeRegistry,
        IReadOnlyList<VolumeDefinition> known, IReadOnlyList<VolumeSpec> wanted, CancellationToken ct)
    {
        var created = new List<VolumeDefinition>();
        foreach (var spec in wanted)
        {
            var existing = known.FirstOrDefault(v => v.Name == spec.Name);
            if (existing is null) continue;
            if (existing.Size != spec.Size || existing.ReadOnly != spec.ReadOnly ||
                (spec.BackingPath is not null && Path.GetFullPath(spec.BackingPath) != existing.BackingPath))
                throw new SettingsException(
                    $"volume {spec.Name} already exists as {ByteSize.Format(existing.Size)} on {existing.BackingPath}; " +
                    $"it cannot be redefined as {ByteSize.Format(spec.Size)}{(spec.BackingPath is null ? "" : $" on {spec.BackingPath}")}" +
                    (spec.ReadOnly ? " read-only" : ""));
        }

        var fresh = wanted.Where(s => known.All(v => v.Name != s.Name)).ToList();
        var prepared = new List<(VolumeDefinition Definition, bool CreatedFile)>();
        try
        {
            foreach (var spec in fresh)
            {
                var path = Path.GetFullPath(spec.BackingPath ?? NodeSettingsLoader.DefaultBackingPath(settings.DataDir, spec.Name));
                if (known.Any(v => v.BackingPath == path) || prepared.Any(p => p.Definition.BackingPath == path))
                    throw new SettingsException($"volume {spec.Name}: backing {path} already belongs to another volume");
                var existed = File.Exists(path) || Directory.Exists(path);
                if (!existed && spec.BackingPath is null) Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                if (!existed && spec.BackingPath is not null && !Directory.Exists(Path.GetDirectoryName(path)))
                    throw new SettingsException($"volume {spec.Name}: the directory of backing {path} does not exist");
                try
                {
                    await using var backing = FileBacking.Open(path, spec.Size, create: !existed, spec.ReadOnly);
                }
                catch (BlockTargetException e)
                {
                    throw new SettingsException($"volume {spec.Name}: {e.Message}");
                }
                prepared.Add((new VolumeDefinition(spec.Name, spec.Size, spec.Mode, path, !existed, spec.ReadOnly), !existed));
            }
            foreach (var (definition, _) in prepared)
            {
                var reply = await volumeRegistry.Ask<object>(new DefineVolume(definition), AskTimeout, ct);
                if (reply is VolumeRejected rejected) throw new SettingsException($"volume {rejected.Name}: {rejected.Reason}");
                created.Add(definition);
                _logger.LogInformation("created volume {Name}: {Size} {Mode} on {Backing}", definition.Name,
                    ByteSize.Format(definition.Size), VolumeSpec.FormatMode(definition.Mode), definition.BackingPath);
            }
        }
        catch
        {
            foreach (var (definition, createdFile) in prepared)
                if (createdFile && created.All(c => c.Name != definition.Name))
                    File.Delete(definition.BackingPath);
            throw;
        }
        return created;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
        {
            _logger.LogInformation("stopping: refusing new NBD connections, finishing in-flight requests");
            await _server.StopAsync(settings.StopGrace);
        }
        foreach (var (_, actor) in _volumeActors)
        {
            try
            {
                await actor.GracefulStop(TimeSpan.FromSeconds(30), CloseVolume.Instance); // the actor flushes and closes its volume
            }
            catch (Exception e) when (e is TaskCanceledException or AskTimeoutException)
            {
                _logger.LogWarning("volume actor {Actor} did not stop in time", actor.Path.Name);
            }
        }
        _logger.LogInformation("stopped cleanly");
    }
}

/// <summary>A volume's actor on this node, with the volume's name (an actor that does not answer can still be named).</summary>
public sealed record VolumeActorRef(string Name, IActorRef Actor);
