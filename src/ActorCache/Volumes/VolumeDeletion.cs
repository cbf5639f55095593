using ActorCache.Hosting;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Volumes;

/// <summary>What deleting a volume did.</summary>
/// <param name="ClientsClosed">NBD connections the deletion closed (only with force).</param>
/// <param name="BackingRemoved">Whether the backing file went too: only one the node created itself.</param>
public sealed record VolumeDeletionResult(string Name, string Backing, bool BackingRemoved, int ClientsClosed);

/// <summary>
/// Deletes a volume from the running node: refused while NBD clients are attached to it or snapshots
/// and clones depend on it, unless forced (then its clients are disconnected first). A backing the user
/// gave is kept, so the log is drained into it first (the volume switches to write-through). The volume
/// is withdrawn from the front, flushed and closed, its log directory removed, its backing too if the
/// node created it, and its deletion recorded, so a restarted node does not serve it. The files go before the
/// record: a crash in between leaves a volume that comes up offline and can be deleted again, never
/// files that a volume created later under the same name would take over.
/// </summary>
public sealed class VolumeDeletion(NodeSettings settings, NodeVolumes volumes, NodeService node, ExportCatalog catalog, ActorRegistry registry,
    VolumeDependents dependents, ActorCache.Snapshots.SnapshotService snapshots, ActorCache.Snapshots.SnapshotClones clones, ILogger<VolumeDeletion> logger)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    public Task<VolumeDeletionResult> DeleteAsync(string name, bool force, CancellationToken ct) => volumes.ChangeAsync(async () =>
    {
        using var hold = await clones.HoldAsync(ct); // no clone of its snapshots starts meanwhile
        volumes.ThrowIfRecovering(name); // its actor would take the close only once the volume is open
        await Admin.VolumeStatusReader.ThrowIfSwitchingAsync(volumes, name, ct);
        var volumeRegistry = await registry.GetAsync<VolumeRegistry>(ct);
        var known = (await volumeRegistry.Ask<VolumeList>(GetVolumes.Instance, AskTimeout, ct)).Volumes;
        var definition = known.FirstOrDefault(v => v.Name == name) ?? throw new VolumeNotFoundException(name);
        var needed = await dependents.OfAsync(name, ct);
        if (needed.Count > 0 && !force)
            throw new VolumeConflictException($"volume {name} is needed by {string.Join(", ", needed)}; delete those first, or force it (--force)");
        // Not even by force: a thin clone would lose every block it has not written.
        if (clones.ClonesOfVolume(name) is { Count: > 0 } dependentClones)
            throw new VolumeConflictException($"volume {name} is read through by {string.Join(", ", dependentClones)}; delete those clones or make them " +
                                              "independent (actorcache snapshot clone ... --independent copies a clone's data) first");
        var clients = node.Server?.ConnectionsTo(name) ?? 0;
        if (clients > 0 && !force)
            throw new VolumeConflictException(
                $"volume {name} has {clients} NBD client(s) connected (to it or to its past); disconnect them first, or force it (--force closes their connections)");

        var closedClients = 0;
        if (force)
        {
            // Its snapshots and the clients of its past go first: they hold history a drain into a kept backing may not pass.
            await snapshots.ForgetVolumeAsync(name, ct);
            catalog.Withdraw(name);
            closedClients = node.Server is { } forced ? await forced.DisconnectAsync(name, "volume deleted", settings.StopGrace) : 0;
        }
        if (!definition.BackingCreated) await DrainIntoBackingAsync(definition, force, ct);

        // From here on the volume goes: no new client finds it, and those attached are closed. Nothing
        // below is cancelled with the request: half a deletion is worse than a late answer.
        catalog.Withdraw(name);
        if (node.Server is { } server) closedClients += await server.DisconnectAsync(name, "volume deleted", settings.StopGrace);
        if (volumes.Find(name) is { } running)
        {
            var closed = await volumes.CloseAsync(running, AskTimeout);
            if (!closed.IsDurable)
                logger.LogWarning("volume {Name} is being deleted; it closed without making every acknowledged write durable: {Reason}", name, closed.Reason);
        }
        var backingRemoved = VolumeFiles.Remove(definition, settings.Cache);
        // A replica's state (replica state, peers' out-of-sync bitmaps, unshared marks) goes with it: a volume made later under the name starts clean.
        var replicaState = Path.Combine(settings.DataDir, "replicas", name);
        if (Directory.Exists(replicaState)) Directory.Delete(replicaState, recursive: true);
        var recorded = await volumeRegistry.Ask<object>(new DeleteVolume(name), AskTimeout, CancellationToken.None);
        if (recorded is VolumeRejected rejected) throw new InvalidOperationException($"volume {name}: {rejected.Reason}");
        clones.Forget(name);
        logger.LogInformation("deleted volume {Name}{Clients}; {Backing}", name, closedClients > 0 ? $" (closed {closedClients} NBD connection(s))" : "",
            backingRemoved ? $"removed its backing {definition.BackingPath}" : $"kept its backing {definition.BackingPath} (the node did not create it)");
        return new VolumeDeletionResult(name, definition.BackingPath, backingRemoved, closedClients);
    }, ct);

    /// <summary>
    /// Writes what the log holds to a backing that stays (the user's file or device), by switching the
    /// volume to write-through. If that fails the deletion is refused, unless forced: then the log's
    /// newest writes are lost with it, and the log says so.
    /// </summary>
    private async Task DrainIntoBackingAsync(VolumeDefinition definition, bool force, CancellationToken ct)
    {
        if (definition.Mode != VolumeMode.WriteBack || definition.ReadOnly || volumes.Find(definition.Name) is not { } running) return;
        // No timeout: a drain takes as long as the backing needs.
        var reply = await running.Actor.Ask<object>(new SetVolumeMode(VolumeMode.WriteThrough), ct);
        if (reply is not VolumeModeRejected rejected) return;
        var problem = $"its log could not be drained into its backing {definition.BackingPath}, which is kept: {rejected.Reason}";
        if (!force) throw new VolumeConflictException($"volume {definition.Name} is not deleted: {problem}; --force deletes it anyway and loses what only the log holds");
        logger.LogWarning("volume {Name} is deleted by force although {Problem}", definition.Name, problem);
    }
}
