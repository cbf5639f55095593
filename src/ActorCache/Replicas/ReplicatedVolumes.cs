using ActorCache.Hosting;
using ActorCache.Replication;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replicas;

/// <summary>
/// Replicated volumes across the cluster (DESIGN §4, §5): creating one on all its nodes (all or
/// nothing), promoting, demoting, switching the protocol, and the peers' status. Each node records its
/// own copy of the replica set (as DRBD keeps metadata per node); a change is made on the node it
/// concerns (the one to promote, the primary to demote or switch) and then told to every replica that
/// is up. A replica that was away learns it when its volume opens (<see cref="ReconcileAsync"/>):
/// the copy with the highest epoch wins.
/// </summary>
public sealed class ReplicatedVolumes(NodeSettings settings, ActorRegistry registry, VolumeCreation creation, VolumeDeletion deletion,
    ReplicaRoles roles, PeerEndpoints peers, ActorCache.Cluster.ClusterOrigin origin, NodeService node, ActorCache.Snapshots.SnapshotService snapshots,
    ILogger<ReplicatedVolumes> logger)
{
    private static readonly TimeSpan CreateTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    public ReplicaRoles Roles => roles;

    private string Self => settings.NodeName;

    /// <summary>Creates the volume on every node of <paramref name="nodes"/> (the first is primary); any refusal removes what was created.</summary>
    public async Task<VolumeDefinition> CreateAsync(VolumeSpec spec, string[] nodes, string protocol, CancellationToken ct)
    {
        if (spec.Mode != VolumeMode.WriteBack)
            throw new VolumeConflictException($"volume {spec.Name}: a replicated volume is write-back (replication ships the write-back log), not {VolumeSpec.FormatMode(spec.Mode)}");
        if (spec.BackingPath is not null || spec.ReadOnly)
            throw new VolumeConflictException($"volume {spec.Name}: a replicated volume has its backing in each node's data directory; leave out backing and read-only");
        var up = peers.UpNodes();
        var missing = nodes.Where(n => !up.Contains(n)).ToList();
        if (missing.Count > 0)
            throw new VolumeConflictException($"volume {spec.Name}: {string.Join(", ", missing)} {(missing.Count == 1 ? "is not an Up, reachable member" : "are not Up, reachable members")} " +
                                              $"of the cluster (Up: {string.Join(", ", up)}); 'actorcache cluster show' lists the members");
        var set = new ReplicaSet(nodes, protocol, "", 0).WithPrimary(nodes[0], 1);
        var request = new CreateReplica(spec.Name, spec.Size, VolumeSpec.FormatMode(spec.Mode), set);
        var answers = await Task.WhenAll(nodes.Select(async n =>
        {
            try
            {
                return (Node: n, Error: await peers.AskAsync<ReplicaCreated>(n, request, ct, CreateTimeout) is null ? $"node {n} did not answer within {CreateTimeout.TotalSeconds:0} s" : null);
            }
            catch (ReplicaRefusedException e)
            {
                return (Node: n, Error: $"node {n}: {e.Message}");
            }
        }));
        var failed = answers.Where(a => a.Error is not null).ToList();
        if (failed.Count > 0)
        {
            // All or nothing: the replicas that were made go again.
            foreach (var (n, _) in answers.Where(a => a.Error is null))
            {
                try
                {
                    await peers.AskAsync<ReplicaRemoved>(n, new RemoveReplica(spec.Name), CancellationToken.None, CreateTimeout);
                }
                catch (ReplicaRefusedException e)
                {
                    logger.LogError("volume {Name}: removing the replica on {Node} after a failed creation failed: {Reason}", spec.Name, n, e.Message);
                }
            }
            throw new VolumeConflictException($"volume {spec.Name} was not created: {string.Join("; ", failed.Select(f => f.Error))}");
        }
        logger.LogInformation("created replicated volume {Name}: {Size} on {Replicas}", spec.Name, Blocks.ByteSize.Format(spec.Size), set);
        return (await DefinitionAsync(spec.Name, ct))!;
    }

    /// <summary>This node's part of a creation: its replica, with the replica set, opened and attached.</summary>
    public async Task<ReplicaCreated> CreateLocalAsync(CreateReplica request, CancellationToken ct)
    {
        if (!VolumeSpec.TryParseMode(request.Mode, out var mode, out var error)) throw new VolumeConflictException(error);
        var spec = new VolumeSpec(request.Name, request.Size, mode, null, false);
        // A volume of that name here keeps its replica state (its marks of unshared writes, bitmaps, history floor): a create
        // that is refused must not touch it, nor remove it on the way out.
        if (await DefinitionAsync(request.Name, ct) is not null)
            throw new VolumeConflictException($"a volume named {request.Name} already exists on node {Self}");
        // A new volume reads as zeroes on every node: a secondary starts without a replica state, which its
        // primary's first connection takes as "nothing to resync" (an empty resync makes it UpToDate).
        var state = roles.StateDirectory(request.Name);
        var made = !Directory.Exists(state);
        Directory.CreateDirectory(state);
        try
        {
            await creation.CreateAsync(spec, ct, replicas: request.Replicas);
        }
        catch
        {
            if (made) Directory.Delete(state, recursive: true);
            throw;
        }
        await roles.ConfirmAsync(request.Name);
        return new ReplicaCreated(Self, request.Name);
    }

    public async Task<ReplicaRemoved> RemoveLocalAsync(string name, CancellationToken ct)
    {
        await deletion.DeleteAsync(name, force: true, ct);
        var state = roles.StateDirectory(name);
        if (Directory.Exists(state)) Directory.Delete(state, recursive: true);
        return new ReplicaRemoved(Self, name);
    }

    public async Task<VolumeDefinition?> DefinitionAsync(string name, CancellationToken ct)
    {
        var volumeRegistry = await registry.GetAsync<VolumeRegistry>(ct);
        return (await volumeRegistry.Ask<VolumeList>(GetVolumes.Instance, AskTimeout, ct)).Volumes.FirstOrDefault(v => v.Name == name);
    }

    private async Task<ReplicaSet> SetAsync(string name, CancellationToken ct)
    {
        var definition = await DefinitionAsync(name, ct) ?? throw new VolumeNotFoundException(name);
        return definition.Replicas ?? throw new VolumeConflictException($"volume {name} is not replicated (it lives on this node alone)");
    }

    public async Task<ReplicaView> ViewAsync(string name, CancellationToken ct)
    {
        var definition = await DefinitionAsync(name, ct);
        var set = roles.SetOf(name) ?? definition?.Replicas;
        var (followed, sequence) = roles.FollowedOf(name);
        return new ReplicaView(Self, name, set, set?.IsPrimary(Self) == true ? "primary" : "secondary", roles.DiskOf(name), roles.IsOpen(name))
        {
            SplitBrainWith = roles.OwnSplitBrainWith(name), // what this node decided; a peer's report is not echoed back
            FollowedVolumeId = followed,
            FollowedSequence = sequence,
        };
    }

    /// <summary>Records and applies a newer replica set; an older or equal one changes nothing.</summary>
    public async Task<ReplicaView> AdoptAsync(string name, ReplicaSet set, CancellationToken ct)
    {
        var gate = AdoptionOf(name);
        await gate.WaitAsync(ct);
        try
        {
            var current = await SetAsync(name, ct);
            if (set.IsNewerThan(current) && await AdoptNewerAsync(name, current, set, ct))
                logger.LogInformation("volume {Name}: adopted replica set {Set}", name, set);
        }
        finally
        {
            gate.Release();
        }
        return await ViewAsync(name, ct);
    }

    // One adoption at a time per volume: the reconciler and a peer's spread may bring the same newer set at once.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, SemaphoreSlim> _adoptions = new(StringComparer.Ordinal);

    private SemaphoreSlim AdoptionOf(string name) => _adoptions.GetOrAdd(name, _ => new SemaphoreSlim(1, 1));

    /// <summary>
    /// Adopts a newer replica set, unless that would resync over writes this node acknowledged and the new
    /// primary may lack: this node FLUSHed while that node lacked data (<see cref="ReplicaRoles.HasUnsharedWrites"/>),
    /// and that node has been primary since. Both sides then hold acknowledged writes the other lacks: split
    /// brain. It is reported (peer status, /health, metrics), never merged: this node keeps its data and
    /// role until an operator or its split-brain policy resolves it (<see cref="ResolveSplitBrainAsync"/>). A set made by
    /// the other side's policy that names this node as the one to give up its data is adopted that way (kept as a snapshot).
    /// </summary>
    private async Task<bool> AdoptNewerAsync(string name, ReplicaSet current, ReplicaSet newer, CancellationToken ct)
    {
        if (newer.Resolution is { } resolution && resolution.Loser == Self && current.Epoch < resolution.Epoch)
        {
            await DiscardLocalAsync(name, newer, $"{resolution.Winner} kept its own data by after-split-brain = {resolution.Policy}", ct);
            return true;
        }
        // Every node primary since this node's set, not only the newest primary: one promoted and demoted again while this node was
        // away wrote too, and its marks would otherwise be cleared below with the writes they stand for. Looked at twice by a serving
        // primary: once as it is (a split brain found every round keeps its clients), and again once its clients' writes are
        // stopped, since a FLUSH acknowledged between the first look and the stop left a mark the adoption would clear.
        var fenced = SplitBrainPeer() is null ? await StopClientsAsync(name, newer) : null;
        if (SplitBrainPeer() is { } diverged)
        {
            if (fenced is not null) ServeAgain(name, fenced); // it keeps its role: split brain is reported, never resolved by itself
            if (roles.MarkSplitBrain(name, diverged))
                logger.LogError("volume {Name}: SPLIT BRAIN with {Peer}: {Peer} was primary since this node's replica set ({Set}) while this node acknowledged " +
                                "FLUSHes it lacks; not connecting. Keep one side: on the side to give up, 'actorcache volume discard-my-data {Name}' keeps its " +
                                "data as snapshot {Name}@split-brain-TIME and resyncs it from the other", name, diverged, diverged, newer, name, name);
            return false;
        }
        try
        {
            await RecordAsync(name, newer, ct);
        }
        catch
        {
            if (fenced is not null) ServeAgain(name, fenced);
            throw;
        }
        // This node's data is the new primary's to overwrite now: nothing it acknowledged is lost (no mark for that primary).
        if (!newer.IsPrimary(Self)) roles.ClearUnshared(name);
        return true;

        string? SplitBrainPeer() => newer.SplitBrainPeer(current, Self, peer => roles.HasUnsharedWrites(name, peer));
    }

    private string? SplitBrainWith(string volume) => roles.SplitBrainWith(volume);

    /// <summary>
    /// Split brain resolved on this side by giving up its data (DRBD's connect --discard-my-data): the
    /// volume's state now is kept as snapshot <c>VOL@split-brain-TIME</c> on this node, then the newest
    /// replica set is adopted and this node is resynced from its primary.
    /// </summary>
    public async Task<ReplicaView> DiscardMyDataAsync(string name, CancellationToken ct)
    {
        var gate = AdoptionOf(name);
        await gate.WaitAsync(ct);
        try
        {
            var set = await SetAsync(name, ct);
            var others = await OthersAsync(name, set, ct);
            var newest = ReplicaSet.Newest(others.Select(v => v.Replicas!).Where(s => s.IsNewerThan(set)))
                         ?? throw new VolumeConflictException($"no replica of {name} that is up has a newer replica set than this node's ({set}); " +
                                                              "discard-my-data gives this side up to a newer primary, and there is none to give it up to");
            await DiscardLocalAsync(name, newest, "volume discard-my-data", ct);
        }
        finally
        {
            gate.Release();
        }
        return await ViewAsync(name, ct);
    }

    /// <summary>This side of a split brain gives up its data to <paramref name="newest"/>'s primary: kept as a snapshot here first, then resynced.</summary>
    private async Task DiscardLocalAsync(string name, ReplicaSet newest, string why, CancellationToken ct)
    {
        var snapshot = $"split-brain-{DateTime.UtcNow:yyyyMMdd'T'HHmmss'Z'}";
        // No client may write between the snapshot and the new role: that write would be in neither.
        roles.RefuseWhileDiscarding(name);
        PrimaryGuard? guard = null;
        try
        {
            if (node.Server is { } server) await server.DisconnectAsync(name, "volume discarding its data after a split brain", settings.StopGrace);
            // The snapshot's FLUSH is this node's alone: a primary giving up its data has lost quorum to the winner's set.
            guard = roles.TakeGuard(name, "it is a replicated volume giving up its data after a split brain on this node; connect to its primary");
            using (var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                bounded.CancelAfter(DiscardTimeout); // the adoption lock is held: never wait for ever
                await snapshots.CreateAsync([name], snapshot, null, bounded.Token);
            }
            logger.LogWarning("volume {Name}: split brain resolved by discarding this node's data ({Why}); it is kept as snapshot {Name}@{Snapshot}, " +
                              "and this node follows {Primary} now", name, why, name, snapshot, newest.Primary);
            roles.ClearUnshared(name);
            roles.ClearSplitBrain(name);
            await RecordAsync(name, newest, ct);
        }
        catch
        {
            roles.RestoreGuard(name, guard);
            roles.ServeAgain(name);
            throw;
        }
    }

    private static readonly TimeSpan DiscardTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A split brain this node found (<see cref="AdoptNewerAsync"/>) under <c>after-split-brain</c> other than disconnect:
    /// the policy picks the side that gives up its data. This side: kept as a snapshot, then it follows the younger
    /// primary. That primary: this node becomes primary under a newer set naming it (<see cref="SplitBrainResolution"/>),
    /// which it adopts by keeping its data as a snapshot and following this node. Only this node decides, so the two
    /// sides never act on opposite decisions. An undecided split brain is looked at again after <see cref="UndecidedPause"/>.
    /// </summary>
    private async Task ResolveSplitBrainAsync(string name, ReplicaSet newer, IReadOnlyList<ReplicaView> others, CancellationToken ct)
    {
        var policy = settings.Replication.AfterSplitBrain;
        if (policy == SplitBrainPolicy.Disconnect) return;
        if (_undecided.TryGetValue(name, out var until) && Environment.TickCount64 < until) return;
        var peer = newer.Primary;
        var policyName = SplitBrainVerdict.Name(policy);
        // As DRBD decides at connect: both sides present. A younger primary that is away cannot be asked, nor told, and a
        // peer resynced from this node meanwhile would lose the only other copy of its writes.
        var peerView = others.FirstOrDefault(v => v.Node == peer && v.Online && v.Replicas?.Epoch == newer.Epoch);
        var (own, theirs) = peerView is not null && policy == SplitBrainPolicy.DiscardLeastChanges ? await CountChangesAsync(name, peer, ct) : (null, null);
        var verdict = peerView is null
            ? new SplitBrainVerdict(null, $"{peer}'s replica is not up (a policy decides only with both sides there)")
            : SplitBrainVerdict.Decide(policy, peer, roles.IsServingPrimary(name), peerView.Role == "primary", own, theirs);
        if (verdict.Loser is not { } loser)
        {
            _undecided[name] = Environment.TickCount64 + (long)UndecidedPause.TotalMilliseconds;
            logger.LogError("volume {Name}: split brain with {Peer} stays unresolved under after-split-brain = {Policy}: {Why}", name, peer, policyName, verdict.Why);
            return;
        }
        _undecided.TryRemove(name, out _);
        logger.LogWarning("volume {Name}: split brain with {Peer}: after-split-brain = {Policy} discards the data of {Loser} ({Why})", name, peer, policyName,
            loser == SplitBrainLoser.FormerPrimary ? "this node" : peer, verdict.Why);
        if (loser == SplitBrainLoser.FormerPrimary)
        {
            await DiscardLocalAsync(name, newer, $"after-split-brain = {policyName}: {verdict.Why}", ct);
            return;
        }
        // This node keeps its data, under a set newer than any a replica has now (the count may have taken a while).
        var newest = ReplicaSet.Newest((await OthersAsync(name, newer, ct, everyUpPeer: true)).Select(v => v.Replicas!).Append(newer))!;
        if (newest.IsNewerThan(newer))
        {
            logger.LogInformation("volume {Name}: the replica set changed while the split brain was decided ({Set}); deciding again", name, newest);
            return;
        }
        var epoch = newer.Epoch + 1;
        var kept = newer.WithPrimary(Self, epoch) with { InSync = null, Resolution = new SplitBrainResolution(Self, peer, epoch, policyName) };
        // Every peer may hold the other side's writes: all marked before any can connect under the new set, narrowed by the logs.
        var basis = roles.OwnHistoryBasis(name);
        if (roles.IsServingPrimary(name))
        {
            await roles.MarkAllOutOfSyncAsync(name, basis);
            await RecordAsync(name, kept, ct);
        }
        else
        {
            // A former primary restarted since: it serves again only once the set that says so is recorded.
            await RecordAsync(name, kept, ct);
            await roles.ConfirmAsync(name, new ReplicaRoles.FullMark(basis));
            logger.LogInformation("volume {Name}: this node was restarted since it was primary, and serves again now that replica set {Set} is recorded",
                name, kept);
        }
        roles.ClearSplitBrain(name);
        logger.LogWarning("volume {Name}: primary again over {Peer}'s split-brain data by after-split-brain = {Policy}; replica set {Set}. {Peer} keeps its data as a snapshot " +
                          "and is resynced from this node", name, peer, policyName, kept, peer);
        await SpreadAsync(name, kept, ct);
    }

    private static readonly TimeSpan UndecidedPause = TimeSpan.FromSeconds(30);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _undecided = new(StringComparer.Ordinal);

    /// <summary>The blocks this node and <paramref name="peer"/> each changed since they last agreed (a point of this node's history both logs cover); null where a log cannot tell.</summary>
    private async Task<(long? Own, long? Theirs)> CountChangesAsync(string name, string peer, CancellationToken ct)
    {
        if (roles.OwnHistoryBasis(name) is not { } basis) return (null, null);
        SplitBrainChanges? theirs = null;
        try
        {
            theirs = await peers.AskAsync<SplitBrainChanges>(peer, new CountChangesSince(name, basis, basis.VolumeId), ct, AskTimeout);
        }
        catch (ReplicaRefusedException e)
        {
            logger.LogInformation("volume {Name}: {Peer} cannot count its changes since batch {Sequence} of this node's history: {Reason}", name, peer, basis.Sequence, e.Message);
        }
        var own = await roles.OwnChangesSinceAsync(name, theirs?.Sequence ?? basis.Sequence);
        return (own, theirs?.Blocks);
    }

    /// <summary>This node's side of <see cref="CountChangesAsync"/>, asked by the former primary.</summary>
    public async Task<SplitBrainChanges> CountChangesSinceAsync(CountChangesSince request, CancellationToken ct)
    {
        var answer = await roles.AnswerHistoryAsync(request.Name, request.Basis, request.Asker).WaitAsync(ct)
                     ?? throw new VolumeConflictException($"node {Self}'s log of {request.Name} no longer covers batch {request.Basis.Sequence} of the asking node's history");
        return new SplitBrainChanges(Self, answer.Sequence, ReplicaHistory.CountOf(answer.Blocks));
    }

    /// <summary>
    /// A serving primary about to take <paramref name="set"/>, which names another node: no client writes on. New ones are refused,
    /// connected ones go once what they sent is answered, and the guard fails any write that still comes. What they wrote is this
    /// node's to give up now. Returns the guard to put back should the change not happen (<see cref="ServeAgain"/>), or null when
    /// there was nothing to stop (not a serving primary, or stopped already).
    /// </summary>
    private async Task<PrimaryGuard?> StopClientsAsync(string name, ReplicaSet set)
    {
        if (!roles.IsServingPrimary(name) || set.IsPrimary(Self)) return null;
        roles.RefuseWhileDemoting(name);
        if (node.Server is { } server && await server.DisconnectAsync(name, "volume no longer primary on this node", settings.StopGrace) is > 0 and var clients)
            logger.LogWarning("volume {Name}: {Clients} NBD clients disconnected: replica set {Set} makes {Primary} the primary", name, clients, set,
                set.Primary.Length > 0 ? set.Primary : "no node");
        return roles.TakeGuard(name, "it is a replicated volume whose primary role is going to another node; connect to its next primary");
    }

    /// <summary>Undoes <see cref="StopClientsAsync"/>: still primary, its guard back and clients let in again.</summary>
    private void ServeAgain(string name, PrimaryGuard? guard)
    {
        roles.RestoreGuard(name, guard);
        roles.ServeAgain(name);
    }

    private async Task RecordAsync(string name, ReplicaSet set, CancellationToken ct)
    {
        // A demotion or an adoption has stopped them already (then this finds nothing to stop).
        var stopped = await StopClientsAsync(name, set);
        object reply;
        try
        {
            var volumeRegistry = await registry.GetAsync<VolumeRegistry>(ct);
            reply = await volumeRegistry.Ask<object>(new ChangeReplicas(name, set), AskTimeout, ct);
        }
        catch
        {
            ServeAgain(name, stopped); // still primary: clients may come back
            throw;
        }
        if (reply is VolumeRejected rejected)
        {
            ServeAgain(name, stopped);
            throw new VolumeConflictException(rejected.Reason);
        }
        await roles.ApplyAsync(name, set);
    }

    /// <summary>Tells every other replica that is up about a new set (best effort: one that is away learns it when it is back).</summary>
    private async Task SpreadAsync(string name, ReplicaSet set, CancellationToken ct)
    {
        await Task.WhenAll(set.Nodes.Where(n => n != Self).Select(async n =>
        {
            try
            {
                if (await peers.AskAsync<ReplicaView>(n, new AdoptReplicaSet(name, set), ct) is null)
                    logger.LogWarning("volume {Name}: node {Node} is not up; it learns replica set {Set} when it is back", name, n, set);
            }
            catch (ReplicaRefusedException e)
            {
                logger.LogWarning("volume {Name}: node {Node} did not take replica set {Set}: {Reason}", name, n, set, e.Message);
            }
        }));
    }

    /// <summary>
    /// What every other replica that answers has of the volume. With <paramref name="everyUpPeer"/>, a replica on an Up, reachable
    /// member that does not answer in time throws <see cref="PeerSilentException"/>: the decision waits for it rather than overlook
    /// it (a node killed a moment ago and not yet seen gone, or one too loaded to answer: either may hold a newer set or newer data).
    /// </summary>
    private async Task<List<ReplicaView>> OthersAsync(string name, ReplicaSet set, CancellationToken ct, bool everyUpPeer = false)
    {
        var views = await Task.WhenAll(set.Nodes.Where(n => n != Self).Select(async n =>
        {
            try
            {
                return await peers.AskAsync<ReplicaView>(n, new GetReplicaView(name), ct, silenceThrows: everyUpPeer);
            }
            catch (ReplicaRefusedException e) when (everyUpPeer)
            {
                // A replica that is up and refuses to say what it holds (a damaged replica state, say) is as unknown as a silent one.
                throw new PeerSilentException($"node {n} is up but refused to say what it holds of {name}: {e.Message}");
            }
            catch (ReplicaRefusedException)
            {
                return null;
            }
        }));
        return [.. views.Where(v => v?.Replicas is not null).Select(v => v!)];
    }

    /// <summary>
    /// After a replicated volume opened here: if another replica has a newer set (a promotion while
    /// this node was away), adopt it; then the front may serve it if this node is still primary.
    /// </summary>
    public async Task ReconcileAsync(string name, CancellationToken ct)
    {
        // Not in a cluster yet: no peer can be asked, and serving now could write beside a newer primary. Nor before it is known
        // whether this node formed its cluster (a moment after it is Up): that decides whether its peers' absence says anything.
        if (!peers.SelfUp() || !origin.Decided) return;
        var set = await SetAsync(name, ct);
        // Every replica that is up must have answered before this node confirms itself: one that is up and silent may hold a newer set.
        List<ReplicaView> others;
        try
        {
            others = await OthersAsync(name, set, ct, everyUpPeer: true);
        }
        catch (PeerSilentException e) when (set.IsPrimary(Self) && !roles.IsServingPrimary(name))
        {
            await roles.HoldUnconfirmedAsync(name, $"{e.Message}; it confirms once that node answers");
            throw;
        }
        // Apart from its peers, or no longer: what it says about itself follows (a silent peer has answered by now).
        var apart = ApartFromPeers(name, set);
        if (!roles.IsServingPrimary(name) && roles.UnconfirmedReason(name) != apart)
        {
            if (apart is not null) logger.LogWarning("volume {Name}: not serving as primary: {Reason}", name, apart);
            await roles.HoldUnconfirmedAsync(name, apart);
        }
        var newest = ReplicaSet.Newest(others.Select(v => v.Replicas!).Where(s => s.IsNewerThan(set)));
        if (newest is not null)
        {
            var gate = AdoptionOf(name);
            await gate.WaitAsync(ct);
            try
            {
                var current = await SetAsync(name, ct);
                if (!newest.IsNewerThan(current)) return; // adopted meanwhile (a peer's spread): the next round looks again
                // In split brain this node keeps its role but is not confirmed: after a restart it does not serve, unless its policy resolves it.
                if (!await AdoptNewerAsync(name, current, newest, ct))
                {
                    await ResolveSplitBrainAsync(name, newest, others, ct);
                    return;
                }
            }
            finally
            {
                gate.Release();
            }
            logger.LogWarning("volume {Name}: the replica set changed to {Set} (a promotion, demotion or protocol switch made elsewhere); adopted", name, newest);
        }
        // The other side of a split brain says so: this node shows it too.
        roles.SeeSplitBrain(name, others.FirstOrDefault(v => v.SplitBrainWith == Self)?.Node);
        roles.ClearMarksOfPeersInSync(name);
        // No replica is there to say who is primary now, and this node's cluster cannot say either: held until one is, or --force.
        if (apart is not null) return;
        await roles.ConfirmAsync(name);
    }

    /// <summary>Whether <paramref name="node"/> is a member of this node's cluster, or has been in this run.</summary>
    private bool InThisCluster(string node) => peers.IsMember(node) || origin.HasSeen(node);

    /// <summary>
    /// The other replicas of <paramref name="set"/>, comma-separated, when this node formed its cluster and none of them is or
    /// has been a member of it in this run (they may run in another cluster); else null.
    /// </summary>
    private string? PeersElsewhere(ReplicaSet set)
    {
        var rest = set.Nodes.Where(n => n != Self).ToList();
        return rest.Count > 0 && origin.FormedItsCluster && !rest.Any(InThisCluster) ? string.Join(", ", rest) : null;
    }

    /// <summary>
    /// Why this node, primary of <paramref name="name"/> in <paramref name="set"/> by its own record, cannot take the silence of
    /// the others for their absence: it formed the cluster it is in (<see cref="ActorCache.Cluster.ClusterOrigin"/>) and none of
    /// them is or has been a member of it in this run, so they may run in another cluster, where one of them may have been
    /// promoted since. In a cluster this node joined, or one a replica is or was a member of, a replica that is not a member
    /// (any more) is not serving: the split-brain resolver stops a side it downs. Null when that does not hold (or the set
    /// has no other replica).
    /// </summary>
    private string? ApartFromPeers(string name, ReplicaSet set)
    {
        if (!set.IsPrimary(Self) || PeersElsewhere(set) is not { } rest) return null;
        return $"node {Self} formed a cluster of its own (it joined itself) and none of {name}'s other replicas ({rest}) is in it; " +
               $"if they run, in another cluster, one of them may have been promoted since. Once one of them is in this node's cluster it " +
               $"confirms (or follows); if they are gone for good, 'actorcache volume promote {name} --force' on {Self} serves its data";
    }

    /// <summary>Promotes the replica on <paramref name="target"/> (this node when null).</summary>
    public async Task<ReplicaView> PromoteAsync(string name, string? target, bool force, CancellationToken ct)
    {
        if (target is null || target == Self) return await PromoteLocalAsync(name, force, ct);
        return await peers.AskAsync<ReplicaView>(target, new PromoteReplica(name, force), ct, AskTimeout)
               ?? throw new VolumeConflictException($"node {target} is not an Up, reachable member of the cluster; promote on a node that is up");
    }

    public async Task<ReplicaView> PromoteLocalAsync(string name, bool force, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (!roles.IsOpen(name)) throw new VolumeConflictException($"volume {name} is not open on node {Self}, so it cannot become primary here");
        List<ReplicaView> others;
        try
        {
            // Without --force every replica that is up must say what it holds: a silent one may be primary, or hold newer data.
            others = await OthersAsync(name, set, ct, everyUpPeer: !force);
        }
        catch (PeerSilentException e)
        {
            throw new VolumeConflictException($"{e.Message}, so what it holds of {name} is unknown and {name} is not promoted; try again in a few seconds, " +
                                              "or force it (--force: this node's data wins)");
        }
        var newest = ReplicaSet.Newest(others.Select(v => v.Replicas!).Append(set))!;
        if (newest.IsNewerThan(set))
        {
            // Adopted as the reconciler would: a split brain is refused, a set that names this node a split brain's loser is taken
            // by keeping its data as a snapshot first.
            var gate = AdoptionOf(name);
            await gate.WaitAsync(ct);
            try
            {
                var current = await SetAsync(name, ct);
                if (newest.IsNewerThan(current) && !await AdoptNewerAsync(name, current, newest, ct))
                    throw new VolumeConflictException($"volume {name} is in split brain with {newest.Primary} (both wrote since they last agreed); resolve it first: " +
                                                      $"'actorcache volume discard-my-data {name}' on the side to give up");
            }
            finally
            {
                gate.Release();
            }
            set = await SetAsync(name, ct);
        }
        if (set.IsPrimary(Self))
        {
            // Its own record names it primary, but it may not be confirmed: apart from its peers, or with a peer that is up and
            // refuses to say what it holds, it never will be by itself. --force confirms it (a newer set a peer holds was adopted above).
            if (!roles.IsServingPrimary(name))
            {
                if (!force && ApartFromPeers(name, set) is { } apart) throw new VolumeConflictException($"volume {name} is not promoted: {apart}");
                if (force)
                {
                    logger.LogWarning("volume {Name}: confirmed as primary on {Node} by force, without its peers' confirmation", name, Self);
                    await roles.ConfirmAsync(name);
                }
            }
            return await ViewAsync(name, ct);
        }
        if (!force && PeersElsewhere(set) is { } rest)
            throw new VolumeConflictException($"volume {name} is not promoted: node {Self} formed a cluster of its own (it joined itself) and none of " +
                                              $"{name}'s other replicas ({rest}) is in it, so what they hold is unknown; once one of them " +
                                              "is in this node's cluster, promote again, or force it (--force: this node's data wins)");
        if (set.Primary.Length > 0 && others.FirstOrDefault(v => v.Node == set.Primary) is { Online: true, Role: "primary" })
            throw new VolumeConflictException($"node {set.Primary} is the primary of {name} and is up; demote it first (actorcache volume demote {name} --node {set.Primary})");
        var disk = roles.DiskOf(name);
        if (disk != nameof(PeerDisk.UpToDate) && !force)
            throw new VolumeConflictException($"node {Self}'s data of {name} is {disk}, not UpToDate: it may lack acknowledged writes. Promote a node with " +
                                              $"UpToDate data ('actorcache peer status {name}' shows them), or force it (--force: this node's data wins and the others resync from it)");
        // Not by force, no UpToDate secondary reached may hold a newer batch of the old primary than this node: a FLUSH may
        // have been acknowledged with its durable copy alone, and promoting this node would resync it away.
        if (!force)
        {
            var (followed, sequence) = roles.FollowedOf(name);
            var newer = others.Where(v => v.Role == "secondary" && v.Disk == nameof(PeerDisk.UpToDate) && v.FollowedVolumeId != Guid.Empty &&
                                          v.FollowedVolumeId == followed && v.FollowedSequence > sequence).MaxBy(v => v.FollowedSequence);
            if (newer is not null)
                throw new VolumeConflictException($"node {newer.Node} holds newer data of {name} than node {Self} (batch {newer.FollowedSequence} of the last primary " +
                                                  $"against {sequence}): promote {newer.Node}, or force this node (--force: {newer.Node}'s newer writes are resynced over)");
        }
        var promoted = set.WithPrimary(Self, newest.Epoch + 1) with { InSync = null };
        // Recorded under the adoption lock, and only over the set the checks above saw: a set adopted meanwhile (a peer's spread,
        // the reconciler) is not overwritten with an older one.
        var recording = AdoptionOf(name);
        await recording.WaitAsync(ct);
        try
        {
            if (await SetAsync(name, ct) is var now && (now.Epoch != set.Epoch || now.Primary != set.Primary))
                throw new VolumeConflictException($"the replica set of {name} changed while {Self} was being promoted; try again");
            await RecordAsync(name, promoted, ct);
        }
        finally
        {
            recording.Release();
        }
        logger.LogWarning("volume {Name}: promoted to primary on {Node}{Force}; replica set {Set}", name, Self, force ? " by force" : "", promoted);
        await SpreadAsync(name, promoted, ct);
        return await ViewAsync(name, ct);
    }

    /// <summary>Demotes the primary (on <paramref name="target"/>, or wherever this node's record says the primary is).</summary>
    public async Task<ReplicaView> DemoteAsync(string name, string? target, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        target ??= set.Primary;
        if (target.Length == 0) throw new VolumeConflictException($"volume {name} has no primary to demote");
        if (target == Self) return await DemoteLocalAsync(name, ct);
        return await peers.AskAsync<ReplicaView>(target, new DemoteReplica(name), ct, AskTimeout)
               ?? throw new VolumeConflictException($"node {target} is not an Up, reachable member of the cluster; a primary that is gone needs no demotion: promote another node");
    }

    public async Task<ReplicaView> DemoteLocalAsync(string name, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (!set.IsPrimary(Self)) throw new VolumeConflictException($"node {Self} is not the primary of {name} (its primary is {(set.Primary.Length > 0 ? set.Primary : "none")})");
        // Clients go first (no new one is let in), so nothing is written after the replicas were told who is primary.
        roles.RefuseWhileDemoting(name);
        ReplicaSet demoted;
        try
        {
            if (node.Server is { } server) await server.DisconnectAsync(name, "volume demoted", settings.StopGrace);
            // A clean demotion: everything flushed and on every peer that can take it, so the next primary resyncs none of them.
            var inSync = await roles.SettleAsync(name, settings.Replication.AckTimeout, ct);
            demoted = set with { Primary = "", Epoch = set.Epoch + 1, InSync = [Self, .. inSync] };
            await RecordAsync(name, demoted, ct);
        }
        catch
        {
            roles.ServeAgain(name);
            throw;
        }
        logger.LogWarning("volume {Name}: demoted on {Node}; no node is its primary until one is promoted. In sync at the demotion: {InSync}",
            name, Self, string.Join(", ", demoted.InSync));
        await SpreadAsync(name, demoted, ct);
        return await ViewAsync(name, ct);
    }

    /// <summary>
    /// Before this node leaves the cluster (<c>cluster leave</c>, a pod's preStop): each volume it is primary of goes to
    /// a peer holding all its data, by a clean demotion here and a promotion there, so the volume stays served and no
    /// peer is resynced. All within <see cref="HandOffBudget"/> (the pod's grace period must still cover the stop). A
    /// volume with no peer in sync in time stays primary here, and one whose promotion elsewhere fails becomes primary
    /// here again; both are named in the result (unavailable while this node is away, unless another is promoted).
    /// </summary>
    public async Task<IReadOnlyList<HandOff>> HandOffPrimariesAsync(CancellationToken ct)
    {
        var spent = System.Diagnostics.Stopwatch.StartNew();
        var results = new List<HandOff>();
        foreach (var name in roles.OpenVolumes())
        {
            if (roles.SetOf(name) is not { } set || !set.IsPrimary(Self)) continue;
            try
            {
                results.Add(await HandOffAsync(name, HandOffBudget - spent.Elapsed, ct));
            }
            catch (Exception e)
            {
                logger.LogError("volume {Name}: handing the primary role over failed: {Reason}", name, e.Message);
                results.Add(new HandOff(name, null, e.Message));
            }
        }
        return results;
    }

    private async Task<HandOff> HandOffAsync(string name, TimeSpan left, CancellationToken ct)
    {
        // Wait for a peer in sync (a resync may be finishing) before any client is turned away, leaving time for the switch itself.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        string? target;
        while ((target = roles.LinksByPeer(name).Where(l => l.Value.IsInSync).Select(l => l.Key).FirstOrDefault()) is null)
        {
            if (watch.Elapsed > left - HandOffSwitch)
                return new HandOff(name, null, $"no peer was in sync with {name} in time ({string.Join(", ", roles.LinksOf(name).Select(p => $"{p.Node} {p.Connection.ToString().ToLowerInvariant()} {p.Disk}"))}); " +
                                               $"it stays primary on {Self} and is unavailable while {Self} is away");
            await Task.Delay(100, ct);
        }
        var demoted = await DemoteLocalAsync(name, ct);
        var inSync = demoted.Replicas?.InSync ?? [];
        // Only a peer that held everything at the demotion takes over: anyone else would resync this node's last writes away.
        if (!inSync.Contains(target)) target = inSync.FirstOrDefault(n => n != Self);
        string problem;
        if (target is null) problem = $"no peer held all of {name}'s data at the demotion";
        else
        {
            try
            {
                await PromoteAsync(name, target, force: false, ct);
                logger.LogWarning("volume {Name}: handed over to {Target} (this node is leaving)", name, target);
                return new HandOff(name, target, null);
            }
            catch (Exception e) when (e is VolumeConflictException or ReplicaRefusedException or OperationCanceledException)
            {
                problem = $"promoting {target} failed: {e.Message}";
            }
        }
        // Back to this node: it holds everything, the peers in sync are identical to it.
        await PromoteLocalAsync(name, force: false, CancellationToken.None);
        return new HandOff(name, null, $"{problem}; {Self} is its primary again and it is unavailable while {Self} is away");
    }

    /// <summary>The whole hand-off of a leaving node, well inside the StatefulSet's 90 s grace period (the node's stop comes after).</summary>
    private static readonly TimeSpan HandOffBudget = TimeSpan.FromSeconds(45);

    /// <summary>What a demotion and a promotion elsewhere may take: the wait for a peer in sync stops this much before the budget ends.</summary>
    private static readonly TimeSpan HandOffSwitch = TimeSpan.FromSeconds(15);

    public async Task<ReplicaView> SwitchProtocolAsync(string name, string protocol, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (set.Primary.Length == 0 || set.Primary == Self) return await SwitchProtocolLocalAsync(name, protocol, ct);
        return await peers.AskAsync<ReplicaView>(set.Primary, new SwitchProtocol(name, protocol), ct, AskTimeout)
               ?? throw new VolumeConflictException($"the primary of {name}, node {set.Primary}, is not up; the protocol is switched on the primary");
    }

    public async Task<ReplicaView> SwitchProtocolLocalAsync(string name, string protocol, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (set.Primary.Length > 0 && !set.IsPrimary(Self)) throw new VolumeConflictException($"node {Self} is not the primary of {name}; its primary is {set.Primary}");
        if (set.Protocol == protocol) return await ViewAsync(name, ct);
        var switched = set with { Protocol = protocol, Epoch = set.Epoch + 1 };
        await RecordAsync(name, switched, ct);
        logger.LogInformation("volume {Name}: protocol {From} -> {To}", name, set.Protocol, protocol);
        await SpreadAsync(name, switched, ct);
        return await ViewAsync(name, ct);
    }

    /// <summary>Every replica's state, as the primary sees it (asked of the primary when it is another node).</summary>
    public async Task<PeerStatusList> PeerStatusAsync(string name, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (set.IsPrimary(Self)) return await LocalPeerStatusAsync(name, ct);
        if (set.Primary.Length > 0)
        {
            try
            {
                if (await peers.AskAsync<PeerStatusList>(set.Primary, new GetPeerStatus(name), ct) is { } fromPrimary) return fromPrimary;
            }
            catch (ReplicaRefusedException)
            {
                // The node we took for primary is not (any more): show what this node knows.
            }
        }
        // No primary to ask: each replica that answers says what it has.
        var others = await OthersAsync(name, set, ct);
        var rows = new List<PeerRow> { Row(await ViewAsync(name, ct), "local") };
        foreach (var n in set.Nodes.Where(n => n != Self))
            rows.Add(others.FirstOrDefault(v => v.Node == n) is { } view
                ? Row(view, "standalone")
                : new PeerRow(n, n == set.Primary ? "primary" : "secondary", "unreachable", nameof(PeerDisk.Unknown), 0, null, false, 0, 0, 0, 0, "not an Up, reachable member"));
        return new PeerStatusList(name, [.. rows.OrderBy(r => Array.IndexOf(set.Nodes, r.Node))]);
    }

    private static PeerRow Row(ReplicaView view, string connection) =>
        new(view.Node, view.Role, connection, view.Disk, 0, null, view.SplitBrainWith is not null, 0, 0, 0, 0,
            view.SplitBrainWith is { } with ? $"split brain with {with}" : view.Online ? null : "volume not open");

    /// <summary>
    /// For /health (the readiness probe): each secondary replica here that its primary does not report in sync
    /// (connected, UpToDate, nothing out of sync, no resync running), one line each. The primary's view is the one
    /// that counts: a secondary just restarted does not know yet what it lacks. So a pod restarted in a rolling
    /// update turns ready only once it holds a current copy again, and the next pod is not taken down before.
    /// A volume with no primary (demoted, none promoted yet) is left out: there is nothing to be in sync with.
    /// </summary>
    public async Task<IReadOnlyList<string>> SecondaryProblemsAsync(CancellationToken ct)
    {
        // Every primary asked at once: the probe's own timeout (1 s by default) must not pass however many there are.
        var asked = await Task.WhenAll(roles.OpenVolumes().Select(async name =>
        {
            if (roles.SetOf(name) is not { } set || set.IsPrimary(Self) || set.Primary.Length == 0) return null;
            PeerStatusList? status = null;
            string? refused = null;
            try
            {
                status = await peers.AskAsync<PeerStatusList>(set.Primary, new GetPeerStatus(name), ct, HealthAskTimeout);
            }
            catch (ReplicaRefusedException e)
            {
                refused = e.Message;
            }
            var row = status?.Peers.FirstOrDefault(p => p.Node == Self);
            if (row is { Connection: "connected", Disk: nameof(PeerDisk.UpToDate), OutOfSyncBytes: 0, Resync: null }) return null;
            return row is null
                ? $"{name}: secondary of {set.Primary}, which does not answer for it{(refused is null ? "" : $" ({refused})")}"
                : $"{name}: secondary of {set.Primary}, not in sync yet: {row.Connection}, {row.Disk}" +
                  (row.Resync is { } r ? $", resync {r.Done * 100 / Math.Max(1, r.Total)}% done" : row.OutOfSyncBytes > 0 ? $", {row.OutOfSyncBytes} bytes out of sync" : "");
        }));
        return [.. asked.OfType<string>()];
    }

    // A probe's own timeout is 1 s by default in Kubernetes: an unresponsive primary must not make the probe time out.
    private static readonly TimeSpan HealthAskTimeout = TimeSpan.FromMilliseconds(500);

    public async Task<PeerStatusList> LocalPeerStatusAsync(string name, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (!set.IsPrimary(Self)) throw new VolumeConflictException($"node {Self} is not the primary of {name}");
        var splitWith = SplitBrainWith(name);
        var rows = new List<PeerRow> { new(Self, "primary", "local", roles.DiskOf(name), 0, null, splitWith is not null, 0, 0, 0, 0, roles.IsOpen(name) ? null : "volume not open") };
        foreach (var link in roles.LinksOf(name))
            rows.Add(new PeerRow(link.Node, "secondary", link.Connection.ToString().ToLowerInvariant(), link.Disk.ToString(), link.OutOfSyncBytes,
                link.Resync is { } r ? new PeerResync(r.Done, r.Total, r.BytesPerSecond) : null, link.Node == splitWith, link.LagBatches, link.LagBytes,
                link.AckLatencyP50Micros, link.AckLatencyP99Micros,
                link.Node == splitWith ? $"split brain: {link.Node} was promoted while this node acknowledged FLUSHes it lacks" : link.Problem));
        return new PeerStatusList(name, [.. rows.OrderBy(r => Array.IndexOf(set.Nodes, r.Node))]);
    }

    // Awaited, not ContinueWith(OnlyOnRanToCompletion): a failure here reaches the asking primary as what it is, not "a task was canceled".
    public async Task<BlockChecksums> ChecksumsAsync(string name, long fromBlock, int count, CancellationToken ct) =>
        new(Self, await roles.ChecksumsAsync(name, fromBlock, count, ct));

    /// <summary>Blocks per verify step: 1 MiB read on each side, 1 KiB of checksums over remoting.</summary>
    private const int VerifyBlocks = 256;

    /// <summary>
    /// Why <paramref name="name"/> cannot be verified from this node now (not replicated, not its primary, no peer connected), as
    /// the exception verify would fail with; else its connected peers' links. Checked before a verify starts, so a refusal is an
    /// answer (409), not an operation that fails at once.
    /// </summary>
    public async Task<Dictionary<string, ReplicaLink>> VerifiedLinksAsync(string name, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (!set.IsPrimary(Self)) throw new VolumeConflictException($"node {Self} is not the primary of {name}; verify runs on its primary, {(set.Primary.Length > 0 ? set.Primary : "none")}");
        var links = roles.LinksByPeer(name).Where(l => l.Value.Status.Connection == PeerConnection.Connected).ToDictionary();
        if (links.Count == 0) throw new VolumeConflictException($"no peer of {name} is connected; verify compares the primary with its connected peers");
        return links;
    }

    /// <summary>
    /// Online verify (DESIGN §4) on the primary (this node): the CRC32C of every 4 KiB block here against each
    /// connected peer's, 1 MiB at a time, at most at the resync rate when one is set; a block that differs is
    /// marked out of sync for that peer (resynced at the next <c>peer resync</c>). Writes in flight can make a
    /// block differ for a moment: that costs a resync of the block, never a wrong answer the other way.
    /// </summary>
    /// <returns>The blocks found differing, per peer.</returns>
    public async Task<IReadOnlyDictionary<string, long>> VerifyAsync(string name, Action<long, long> progress, CancellationToken ct)
    {
        var links = await VerifiedLinksAsync(name, ct);
        var blocks = roles.SizeOf(name) / 4096;
        var differing = links.Keys.ToDictionary(p => p, _ => 0L);
        var started = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            await VerifyStepsAsync();
        }
        finally
        {
            // What verify marked is in no log: it must survive a crash of this node (ReplicaLink.SaveMarks).
            foreach (var (peer, count) in differing)
                if (count > 0) links[peer].SaveMarks();
        }
        foreach (var (peer, count) in differing)
            if (count > 0) logger.LogWarning("volume {Name}: verify found {Blocks} block(s) differing on {Peer}; marked out of sync ('actorcache peer resync {Name}' resyncs them)", name, count, peer, name);
            else logger.LogInformation("volume {Name}: verify found {Peer} equal", name, peer);
        return differing;

        async Task VerifyStepsAsync()
        {
            for (long from = 0; from < blocks; from += VerifyBlocks)
            {
                var count = (int)Math.Min(VerifyBlocks, blocks - from);
                var local = await roles.ChecksumsAsync(name, from, count, ct);
                foreach (var (peer, link) in links)
                {
                    var remote = await peers.AskAsync<BlockChecksums>(peer, new GetBlockChecksums(name, from, count), ct)
                                 ?? throw new VolumeConflictException($"verify of {name}: {peer} stopped answering at block {from}; run it again once {peer} is back");
                    for (var i = 0; i < count; i++)
                    {
                        if (remote.Crcs[i] == local[i]) continue;
                        link.MarkOutOfSync(from + i, 1);
                        differing[peer]++;
                    }
                }
                progress((from + count) * 4096, blocks * 4096);
                // At most the resync rate, when one is set, so foreground I/O keeps going.
                if (settings.Replication.ResyncRate > 0)
                {
                    var due = TimeSpan.FromSeconds((double)(from + count) * 4096 * links.Count / settings.Replication.ResyncRate);
                    if (due > started.Elapsed) await Task.Delay(due - started.Elapsed, ct);
                }
            }
        }
    }

    /// <summary>On the primary (this node): every link reconnects, which resyncs what its bitmap holds.</summary>
    public async Task ResyncAsync(string name, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (!set.IsPrimary(Self)) throw new VolumeConflictException($"node {Self} is not the primary of {name}; ask its primary, {(set.Primary.Length > 0 ? set.Primary : "none")}");
        roles.Reconnect(name);
    }

    /// <summary>Changes the resync rate of the volume's links on its primary (this node).</summary>
    public async Task SetResyncRateAsync(string name, long bytesPerSecond, CancellationToken ct)
    {
        var set = await SetAsync(name, ct);
        if (!set.IsPrimary(Self)) throw new VolumeConflictException($"node {Self} is not the primary of {name}; set the resync rate on its primary, {set.Primary}");
        roles.SetResyncRate(name, bytesPerSecond);
    }
}
