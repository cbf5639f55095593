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
/// registry, checks everything a new volume needs before creating any file, starts a volume actor per
/// volume (<see cref="NodeVolumes"/>) and the NBD front on the listeners bound at start, and goes on to
/// the admin listener while the volumes open in the background (a long log replay shows its progress in
/// /health and volume status meanwhile). Stops in the reverse order and remembers whether every volume made
/// its acknowledged writes durable.
/// </summary>
public sealed class NodeService(
    NodeSettings settings,
    NodeListeners listeners,
    ActorRegistry registry,
    ExportCatalog catalog,
    ActorCache.Snapshots.SnapshotCatalog snapshots,
    NodeVolumes volumeActors,
    VolumeCreation creation,
    ActorCache.Replicas.ReplicaRoles replication,
    ILoggerFactory loggerFactory) : IHostedService
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);
    /// <summary>How long a volume gets to flush and close at stop before it is reported as not durable.</summary>
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(30);
    private readonly ILogger _logger = loggerFactory.CreateLogger<NodeService>();
    private volatile NbdServer? _server;
    private readonly List<VolumeClosed> _losses = [];

    /// <summary>The NBD front, once the node serves (it counts and disconnects the clients of each export).</summary>
    public NbdServer? Server => _server;

    /// <summary>True once the start went all the way (NBD served, every volume started; they may still be opening).</summary>
    public bool Started { get; private set; }

    /// <summary>Volumes that could not make every acknowledged write durable when the node stopped.</summary>
    public IReadOnlyList<VolumeClosed> Losses => _losses;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var volumeRegistry = await registry.GetAsync<VolumeRegistry>(cancellationToken);
        IReadOnlyList<VolumeDefinition> known;
        try
        {
            known = (await volumeRegistry.Ask<VolumeList>(GetVolumes.Instance, AskTimeout, cancellationToken)).Volumes;
        }
        catch (AskTimeoutException)
        {
            // The registry cannot recover without its journal; the persistence errors logged above say why.
            throw new SettingsException($"the metadata store ({(settings.Metadata == MetadataProvider.Sqlite ? "SQLite" : "PostgreSQL")}) did not answer " +
                                        $"within {AskTimeout.TotalSeconds:0} s; check actorcache.metadata (the errors logged above say what failed)");
        }

        // Kept snapshots are protected again before their volumes' destagers run.
        var snapshotRegistry = await registry.GetAsync<ActorCache.Snapshots.SnapshotRegistry>(cancellationToken);
        snapshots.Load((await snapshotRegistry.Ask<ActorCache.Snapshots.SnapshotList>(ActorCache.Snapshots.ListSnapshots.Instance, AskTimeout,
            cancellationToken)).Snapshots);

        var wanted = settings.Volumes.Count == 0 && known.Count == 0 ? [settings.DefaultVolume] : settings.Volumes;
        CheckRedefinitions(known, wanted);
        var fresh = PlanNewVolumes(known, wanted.Where(s => known.All(v => v.Name != s.Name)));
        // Asking for an existing volume in another mode switches it (leaving write-back drains the log first).
        var switched = known.Select(v => wanted.FirstOrDefault(w => w.Name == v.Name) is { } w && w.Mode != v.Mode ? v with { Mode = w.Mode } : v).ToList();
        var logSpace = PlanLogSpace([.. switched, .. fresh]);

        // Every check is done: from here on files are created.
        foreach (var volume in switched.Where(v => known.First(k => k.Name == v.Name).Mode != v.Mode))
            await SwitchModeAsync(volumeRegistry, known.First(k => k.Name == volume.Name), volume.Mode, cancellationToken);
        var volumes = switched;
        volumes.AddRange(await creation.CreateAsync(volumeRegistry, fresh, cancellationToken));

        // Secondaries take their primaries' data connections from the moment their volumes open.
        replication.Start();

        // NBD answers from now on: a volume still opening is named with how far its recovery is.
        _server = new NbdServer(catalog, settings.Nbd, loggerFactory.CreateLogger<NbdServer>());
        _server.Start(listeners.Nbd);
        Started = true;
        // Every volume is one of the node's from now on (listed, in /health and /metrics as recovering until it
        // is open), and the start goes on to the admin listener at once: opening a volume usually takes moments,
        // but one that replays a long log can take minutes, and /health and `volume status` say how far it is.
        // A volume that cannot open (its backing is gone, say) stays offline with its reason; the others serve.
        var added = new List<VolumeActorRef>();
        foreach (var definition in OriginsFirst(volumes))
        {
            try
            {
                added.Add(await volumeActors.AddAsync(definition, logSpace.CapacityOf(definition.Name), cancellationToken));
            }
            catch (InvalidActorNameException e)
            {
                _logger.LogError("volume {Name} did not open: {Error}", definition.Name, e.Message);
            }
        }
        _opening = OpenAllAsync(added, volumes);
    }

    private Task _opening = Task.CompletedTask;

    /// <summary>Opens the volumes one after the other (a clone after its origin), then says the node serves them all.</summary>
    private async Task OpenAllAsync(IReadOnlyList<VolumeActorRef> added, IReadOnlyList<VolumeDefinition> volumes)
    {
        await Task.Yield();
        foreach (var volume in added)
        {
            try
            {
                await volumeActors.OpenAsync(volume, CancellationToken.None);
            }
            catch (Exception e) when (e is AskTimeoutException or OperationCanceledException)
            {
                _logger.LogError("volume {Name} did not open: {Error}", volume.Name, e.Message);
            }
        }
        _logger.LogInformation("node serving {Count} volume(s): {Volumes}", volumes.Count,
            string.Join(", ", volumes.Select(v => $"{v.Name} ({ByteSize.Format(v.Size)}, {VolumeSpec.FormatMode(v.Mode)})")));
    }

    /// <summary>A clone opens after the volume of its snapshot (which may be a clone itself): it reads through to it.</summary>
    private static List<VolumeDefinition> OriginsFirst(IReadOnlyList<VolumeDefinition> volumes)
    {
        var ordered = new List<VolumeDefinition>();
        var pending = volumes.ToList();
        while (pending.Count > 0)
        {
            var ready = pending.Where(v => v.Origin is not { } o || ordered.Any(d => d.Name == o.Volume) || pending.All(p => p.Name != o.Volume)).ToList();
            if (ready.Count == 0) ready = pending; // a cycle cannot be made; open the rest anyway
            ordered.AddRange(ready);
            pending.RemoveAll(ready.Contains);
        }
        return ordered;
    }

    /// <summary>Records the mode asked for at start before the volume opens in it: a stop right after cannot leave the old mode on record.</summary>
    private async Task SwitchModeAsync(IActorRef volumeRegistry, VolumeDefinition volume, VolumeMode mode, CancellationToken cancellationToken)
    {
        _logger.LogInformation("volume {Name}: mode {From} -> {To}", volume.Name, VolumeSpec.FormatMode(volume.Mode), VolumeSpec.FormatMode(mode));
        await volumeRegistry.Ask<VolumeModeChanged>(new ChangeVolumeMode(volume.Name, mode, Reply: true), AskTimeout, cancellationToken);
    }

    /// <summary>Asking for an existing volume with another size, backing or read-only flag is an error, not a silent change.</summary>
    private static void CheckRedefinitions(IReadOnlyList<VolumeDefinition> known, IReadOnlyList<VolumeSpec> wanted)
    {
        foreach (var spec in wanted)
        {
            var existing = known.FirstOrDefault(v => v.Name == spec.Name);
            if (existing is null) continue;
            if (existing.Replicas is not null && existing.Mode != spec.Mode)
                throw new SettingsException($"volume {spec.Name} is replicated: it stays {VolumeSpec.FormatMode(existing.Mode)} (replication ships its log); " +
                                            $"leave its mode out of --volume or give {VolumeSpec.FormatMode(existing.Mode)}");
            if (existing.Size != spec.Size || existing.ReadOnly != spec.ReadOnly ||
                (spec.BackingPath is not null && Path.GetFullPath(spec.BackingPath) != existing.BackingPath))
                throw new SettingsException(
                    $"volume {spec.Name} already exists as {ByteSize.Format(existing.Size)} on {existing.BackingPath}; " +
                    $"it cannot be redefined as {ByteSize.Format(spec.Size)}{(spec.BackingPath is null ? "" : $" on {spec.BackingPath}")}" +
                    (spec.ReadOnly ? " read-only" : ""));
        }
    }

    /// <summary>The definitions of volumes the registry does not know yet, with every backing checked; nothing is created here.</summary>
    private List<VolumeDefinition> PlanNewVolumes(IReadOnlyList<VolumeDefinition> known, IEnumerable<VolumeSpec> fresh)
    {
        var planned = new List<VolumeDefinition>();
        foreach (var spec in fresh) planned.Add(creation.Plan(spec, [.. known, .. planned]));
        return planned;
    }

    /// <summary>Compares the log file system's free space with what the volumes' logs may take, and sizes the logs to fit (or refuses).</summary>
    private LogSpace PlanLogSpace(IReadOnlyList<VolumeDefinition> volumes)
    {
        var withLogs = volumes.Where(v => VolumeStack.HasLog(v, settings.Cache)).Select(v => v.Name).ToList();
        var plan = LogSpace.Plan(settings.Cache, withLogs);
        if (plan.Reduced)
        {
            _logger.LogWarning(
                "log directory {Directory}: its file system has {Free} free{Held}, less than the {Asked} of cache.log-capacity that each of {Count} volume log(s) may take; " +
                "log capacity reduced to what can be held: {Capacities}",
                plan.Directory, ByteSize.Format(plan.FreeBytes >> 20 << 20), plan.HeldBytes > 0 ? $" plus {ByteSize.Format(plan.HeldBytes >> 20 << 20)} its logs hold" : "",
                ByteSize.Format(plan.AskedPerVolume), withLogs.Count,
                string.Join(", ", withLogs.Select(v => $"{v} {ByteSize.Format(plan.CapacityOf(v))} (retention cap {ByteSize.Format(RetentionCap(plan.CapacityOf(v)))})")));
        }
        return plan;
    }

    private long RetentionCap(long capacity) => settings.Cache.OptionsFor("") with { LogCapacity = capacity } is var o ? o.RetentionCapBytes : 0;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
        {
            _logger.LogInformation("stopping: refusing new NBD connections, finishing in-flight requests");
            await _server.StopAsync(settings.StopGrace);
        }
        await _opening; // a volume opening cannot be stopped half-way; it closes once open
        // All at once, a clone before the volume whose snapshot it reads through to. Each actor
        // withdraws its volume from the front, flushes and closes it, answers, and stops.
        foreach (var closed in await volumeActors.CloseAllAsync(CloseTimeout))
        {
            if (closed.IsDurable) continue;
            _losses.Add(closed);
            _logger.LogError("volume {Name}: {Bytes} of acknowledged writes could not be made durable: {Reason}",
                closed.Name, closed.NotDurableBytes == VolumeClosed.UnknownBytes ? "an unknown amount" : $"{closed.NotDurableBytes} bytes", closed.Reason);
        }
        if (!Started) return; // a failed start is reported by the caller, not as a clean stop
        if (_losses.Count == 0) _logger.LogInformation("stopped cleanly");
        else _logger.LogError("stopped with {Count} volume(s) missing acknowledged writes: {Volumes}", _losses.Count, string.Join(", ", _losses.Select(l => l.Name)));
    }
}
