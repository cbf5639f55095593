using ActorCache.Blocks;
using ActorCache.Hosting;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Volumes;

/// <summary>
/// Makes new volumes, all or nothing: every check before any file (the same for <c>serve --volume</c>
/// and for a volume created on a running node), then the backings, then the definitions in the
/// registry. A failure removes what was created. On a running node the new volume is also started
/// and published, and a volume that cannot open is taken back out as if it had never been asked for.
/// </summary>
public sealed class VolumeCreation(NodeSettings settings, NodeVolumes volumes, ActorRegistry registry, ActorCache.Snapshots.SnapshotClones clones,
    ILogger<VolumeCreation> logger)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The definition a new volume gets, with its backing checked (usable, not another volume's) and
    /// nothing created. <paramref name="taken"/> are the volumes that exist or are planned already.
    /// </summary>
    public VolumeDefinition Plan(VolumeSpec spec, IEnumerable<VolumeDefinition> taken)
    {
        var path = Path.GetFullPath(spec.BackingPath ?? NodeSettingsLoader.DefaultBackingPath(settings.DataDir, spec.Name));
        if (taken.FirstOrDefault(v => v.BackingPath == path) is { } owner)
            throw new VolumeConflictException($"volume {spec.Name}: backing {path} already belongs to volume {owner.Name}");
        if (spec.BackingPath is not null) StartChecks.CheckBacking(spec, path);
        else if (File.Exists(Path.Combine(settings.DataDir, "volumes")))
            throw new SettingsException($"{Path.Combine(settings.DataDir, "volumes")} is a file; the node keeps default backing files in that directory");
        var exists = File.Exists(path);
        if (!exists && spec.ReadOnly)
            throw new SettingsException($"volume {spec.Name}: read-only backing {path} does not exist; a read-only volume serves an existing file or device");
        return new VolumeDefinition(spec.Name, spec.Size, spec.Mode, path, !exists, spec.ReadOnly);
    }

    /// <summary>
    /// Creates the backings of <paramref name="planned"/> volumes and records them. All or nothing: if
    /// any backing cannot be prepared or recorded, the backings created here are removed before the error is reported.
    /// </summary>
    public async Task<List<VolumeDefinition>> CreateAsync(IActorRef volumeRegistry, IReadOnlyList<VolumeDefinition> planned, CancellationToken ct)
    {
        var created = new List<VolumeDefinition>();
        var prepared = new List<VolumeDefinition>();
        try
        {
            foreach (var definition in planned)
            {
                if (definition.BackingCreated) Directory.CreateDirectory(Path.GetDirectoryName(definition.BackingPath)!);
                try
                {
                    prepared.Add(definition);
                    await using var backing = FileBacking.Open(definition.BackingPath, definition.Size, create: definition.BackingCreated, definition.ReadOnly);
                }
                catch (BlockTargetException e)
                {
                    throw new SettingsException($"volume {definition.Name}: {e.Message}");
                }
            }
            foreach (var definition in prepared)
            {
                var reply = await volumeRegistry.Ask<object>(new DefineVolume(definition), AskTimeout, ct);
                if (reply is VolumeRejected rejected) throw new VolumeConflictException($"volume {rejected.Name}: {rejected.Reason}");
                created.Add(definition);
                logger.LogInformation("created volume {Name}: {Size} {Mode} on {Backing}", definition.Name,
                    ByteSize.Format(definition.Size), VolumeSpec.FormatMode(definition.Mode), definition.BackingPath);
            }
        }
        catch
        {
            foreach (var definition in prepared)
                if (definition.BackingCreated && created.All(c => c.Name != definition.Name))
                    File.Delete(definition.BackingPath);
            throw;
        }
        return created;
    }

    /// <summary>
    /// Creates one volume on the running node and serves it: the checks of <c>serve --volume</c>, a log
    /// sized to what its file system can still hold (<see cref="LogSpace.PlanAdded"/>), the backing,
    /// the definition, the volume actor and its export. If the volume cannot open, its actor, files
    /// and definition are removed again and the reason is thrown.
    /// </summary>
    /// <param name="origin">For a clone: the snapshot it starts from.</param>
    /// <param name="replicas">For this node's replica of a replicated volume: its replica set.</param>
    public Task<VolumeDefinition> CreateAsync(VolumeSpec spec, CancellationToken ct, CloneOrigin? origin = null, ActorCache.Replicas.ReplicaSet? replicas = null) =>
        volumes.ChangeAsync(async () =>
    {
        var volumeRegistry = await registry.GetAsync<VolumeRegistry>(ct);
        var known = (await volumeRegistry.Ask<VolumeList>(GetVolumes.Instance, AskTimeout, ct)).Volumes;
        if (known.FirstOrDefault(v => v.Name == spec.Name) is { } existing)
            throw new VolumeConflictException($"a volume named {spec.Name} already exists ({ByteSize.Format(existing.Size)} on {existing.BackingPath})");
        var definition = Plan(spec, known) with { Origin = origin, Replicas = replicas };
        var logCapacity = settings.Cache.LogCapacity;
        if (VolumeStack.HasLog(definition, settings.Cache))
        {
            logCapacity = LogSpace.PlanAdded(settings.Cache, spec.Name, volumes.Running.ToDictionary(v => v.Name, v => v.LogCapacity)).CapacityOf(spec.Name);
            if (logCapacity < settings.Cache.LogCapacity)
                logger.LogWarning("volume {Name}: its log gets {Capacity} of cache.log-capacity {Asked}: that is what the file system of {Directory} holds " +
                                  "beyond what the running volumes' logs may still take", spec.Name, ByteSize.Format(logCapacity),
                    ByteSize.Format(settings.Cache.LogCapacity), settings.Cache.LogDir);
        }
        await CreateAsync(volumeRegistry, [definition], ct);

        object opened;
        try
        {
            opened = await volumes.StartAsync(definition, logCapacity, ct);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            opened = new VolumeOpenFailed(definition.Name, $"it did not open within {AskTimeout.TotalSeconds:0} s");
        }
        if (opened is VolumeOpenFailed failed)
        {
            await TakeBackAsync(volumeRegistry, definition);
            throw new InvalidOperationException($"volume {definition.Name} could not be opened, so it was not created: {failed.Reason}");
        }
        return definition;
    }, ct);

    /// <summary>Undoes a creation whose volume did not open: its actor, its files, its definition.</summary>
    private async Task TakeBackAsync(IActorRef volumeRegistry, VolumeDefinition definition)
    {
        if (volumes.Find(definition.Name) is { } actor) await volumes.CloseAsync(actor, AskTimeout);
        clones.Forget(definition.Name);
        VolumeFiles.Remove(definition, settings.Cache);
        await volumeRegistry.Ask<object>(new DeleteVolume(definition.Name), AskTimeout);
        logger.LogWarning("volume {Name} was removed again: it could not be opened", definition.Name);
    }
}
