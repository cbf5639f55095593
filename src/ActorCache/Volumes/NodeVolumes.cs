using ActorCache.Cache;
using ActorCache.Hosting;
using ActorCache.Snapshots;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Volumes;

/// <summary>
/// The volume actors this node runs, by name, with the log capacity each was opened with. The node
/// starts them when it starts and closes them when it stops; volumes created and deleted while it runs
/// come and go here too, one change at a time (<see cref="ChangeAsync{T}"/>).
/// </summary>
public sealed class NodeVolumes(NodeSettings settings, ActorSystem system, ActorRegistry registry, ExportCatalog catalog, RingBuffer ring,
    SnapshotCatalog snapshots, SnapshotService snapshotService, SnapshotClones clones, ILoggerFactory loggers, IVolumeObserver? observer = null)
{
    // Opening replays the log after the persisted index, which is quick; without a usable index it
    // replays the whole retained history, which can take minutes. Either way the open is waited for.
    private static readonly TimeSpan OpenTimeout = TimeSpan.FromHours(6);
    private readonly SemaphoreSlim _changes = new(1, 1);
    private readonly Lock _gate = new();
    // Replaced, never changed in place: the admin listener reads it from request threads.
    private volatile IReadOnlyList<VolumeActorRef> _running = [];

    /// <summary>Every volume actor of this node, in the order they started (each answers <see cref="GetVolumeStatus"/>).</summary>
    public IReadOnlyList<VolumeActorRef> Running => _running;

    public VolumeActorRef? Find(string name) => _running.FirstOrDefault(v => v.Name == name);

    /// <summary>
    /// Starts a volume's actor and opens the volume with a log of <paramref name="logCapacity"/> bytes.
    /// Answers <see cref="VolumeOpened"/>, or <see cref="VolumeOpenFailed"/>: the volume then stays
    /// offline with its reason and the node serves the others.
    /// </summary>
    public async Task<object> StartAsync(VolumeDefinition definition, long logCapacity, CancellationToken cancellationToken) =>
        await OpenAsync(await AddAsync(definition, logCapacity, cancellationToken), cancellationToken);

    /// <summary>
    /// Starts a volume's actor without opening the volume: from now on it is one of the node's volumes
    /// (listed, in /health and the metrics) as recovering, until <see cref="OpenAsync"/> has opened it.
    /// </summary>
    public async Task<VolumeActorRef> AddAsync(VolumeDefinition definition, long logCapacity, CancellationToken cancellationToken)
    {
        var volumeRegistry = await registry.GetAsync<VolumeRegistry>(cancellationToken);
        var cache = settings.Cache with { LogCapacity = logCapacity };
        clones.Track(definition); // a clone that cannot open still holds on to its snapshot
        // Status, /health and NBD clients read the recovery's progress meanwhile: the actor answers nothing while it opens.
        var recovery = new VolumeRecovery(settings.Cache.RecoveryDelay);
        catalog.MarkRecovering(definition.Name, recovery);
        var actor = system.ActorOf(VolumeActor.Props(definition, catalog,
            (d, actors) => VolumeStack.OpenAsync(d, cache, ring, loggers, actors, snapshots.KeptSequences(d.Name),
                sequence => snapshotService.MarkExpired(d.Name, sequence), clones.OpenOriginAsync, recovery, sequence => clones.Needs(d.Name, sequence)),
            volumeRegistry, observer), $"volume-{definition.Name}");
        var added = new VolumeActorRef(definition.Name, actor, logCapacity, recovery);
        lock (_gate) _running = [.. _running, added];
        return added;
    }

    /// <summary>Opens a volume <see cref="AddAsync"/> started (replaying its log): <see cref="VolumeOpened"/> or <see cref="VolumeOpenFailed"/>.</summary>
    public async Task<object> OpenAsync(VolumeActorRef volume, CancellationToken cancellationToken)
    {
        try
        {
            return await volume.Actor.Ask<object>(OpenVolume.Instance, OpenTimeout, cancellationToken);
        }
        finally
        {
            volume.Recovery?.Finish();
            if (volume.Recovery is { } recovery) catalog.EndRecovering(volume.Name, recovery);
        }
    }

    /// <summary>
    /// Refuses a change to a volume that is still opening (its actor takes nothing else until then): the
    /// admin API answers 409 with how far it is, instead of a request that waits for minutes.
    /// </summary>
    public void ThrowIfRecovering(string name)
    {
        if (Find(name)?.Recovery is { Finished: false } recovery)
            throw new VolumeConflictException($"volume {name} is not open yet, it is {recovery.Describe()}; it takes changes once it is open " +
                                              $"(actorcache volume status {name} shows how far it is)");
    }

    /// <summary>
    /// Closes every volume (at the node's stop), each within <paramref name="timeout"/>, all at once but a volume after its
    /// clones: see <see cref="VolumeShutdown"/>.
    /// </summary>
    public Task<IReadOnlyList<VolumeClosed>> CloseAllAsync(TimeSpan timeout) =>
        VolumeShutdown.CloseAllAsync(_running, clones.CloneNamesOfVolume, volume => CloseAsync(volume, timeout));

    /// <summary>
    /// Closes a volume (withdrawn from the front, flushed, closed), waits until its actor has stopped
    /// (so its name is free for a volume created next) and forgets it. A volume that does not finish
    /// within <paramref name="timeout"/> is reported as not durable.
    /// </summary>
    public async Task<VolumeClosed> CloseAsync(VolumeActorRef volume, TimeSpan timeout)
    {
        VolumeClosed closed;
        try
        {
            var stopped = volume.Actor.WatchAsync();
            closed = await volume.Actor.Ask<VolumeClosed>(CloseVolume.Instance, timeout, CancellationToken.None);
            await stopped.WaitAsync(timeout);
        }
        catch (Exception e) when (e is TaskCanceledException or AskTimeoutException or TimeoutException)
        {
            closed = new VolumeClosed(volume.Name, VolumeClosed.UnknownBytes, $"it did not finish flushing within {timeout.TotalSeconds:0} s");
        }
        lock (_gate) _running = [.. _running.Where(v => v != volume)];
        return closed;
    }

    /// <summary>Runs <paramref name="change"/> (create, delete, grow a volume) once no other change is running.</summary>
    public async Task<T> ChangeAsync<T>(Func<Task<T>> change, CancellationToken cancellationToken)
    {
        await _changes.WaitAsync(cancellationToken);
        try
        {
            return await change();
        }
        finally
        {
            _changes.Release();
        }
    }
}

/// <summary>A volume's actor on this node, with the volume's name (an actor that does not answer can still be named) and its log's capacity.</summary>
/// <param name="Recovery">How far its open has got (while it opens, its actor answers nothing).</param>
public sealed record VolumeActorRef(string Name, IActorRef Actor, long LogCapacity, VolumeRecovery? Recovery = null);
