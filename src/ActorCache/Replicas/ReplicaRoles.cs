using System.Collections.Concurrent;
using System.Net;
using ActorCache.Cache;
using ActorCache.Hosting;
using ActorCache.Replication;
using ActorCache.Volumes;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replicas;

/// <summary>
/// What each replicated volume open on this node does for replication (DESIGN §4): on its primary, a
/// <see cref="ReplicaLink"/> per secondary ships the log's batches; on a secondary, the node's
/// <see cref="ReplicaReceiver"/> applies what its primary sends, and the NBD front refuses the volume,
/// naming the primary. Volume actors report their volumes opening and closing here; a promotion,
/// demotion or protocol switch changes a volume's role in place (<see cref="ApplyAsync"/>).
/// </summary>
public sealed class ReplicaRoles(NodeSettings settings, ExportCatalog catalog, PeerEndpoints endpoints, ILoggerFactory loggers) : IVolumeObserver, IAsyncDisposable
{
    private readonly ILogger _logger = loggers.CreateLogger("ActorCache.Replication");
    private readonly ConcurrentDictionary<string, Attached> _attached = new(StringComparer.Ordinal);
    private readonly Lock _receiverGate = new();
    private readonly SemaphoreSlim _changes = new(1, 1); // one role change at a time
    private ReplicaReceiver? _receiver;

    public string NodeName => settings.NodeName;

    /// <summary>Where other nodes reach this node's data listener (HOST:PORT, HOST as configured), once it listens.</summary>
    public string? DataAddress => _receiver is { } receiver
        ? $"{(settings.Replication.ListenHost.Contains(':') && !settings.Replication.ListenHost.StartsWith('[') ? $"[{settings.Replication.ListenHost}]" : settings.Replication.ListenHost)}:{receiver.LocalEndpoint.Port}"
        : null;

    /// <summary>Starts the data listener (idempotent); the node starts it before its volumes open.</summary>
    public void Start()
    {
        lock (_receiverGate)
        {
            if (_receiver is not null) return;
            // A primary silent for twice the time it gives its peers to answer, in the middle of a frame, is dropped.
            _receiver = ReplicaReceiver.Start(settings.Replication.Bind, Resolve, _logger, 2 * settings.Replication.AckTimeout);
            _logger.LogInformation("replication: taking data connections on {Endpoint} (peers reach it at {Address})", _receiver.LocalEndpoint, DataAddress);
        }
    }

    /// <summary>The directory where this node keeps a volume's replica state (its own and, on a primary, each peer's out-of-sync bitmap).</summary>
    public string StateDirectory(string volume) => Path.Combine(settings.DataDir, "replicas", volume);

    /// <summary>The replica set a volume open here has now, or null when it is not a replicated volume open here.</summary>
    public ReplicaSet? SetOf(string volume) => _attached.TryGetValue(volume, out var attached) ? attached.Set : null;

    /// <summary>This node's own disk state of a volume: UpToDate on a primary, what the replica state file says on a secondary.</summary>
    public string DiskOf(string volume)
    {
        if (_attached.TryGetValue(volume, out var attached) && attached.Set.IsPrimary(settings.NodeName)) return nameof(PeerDisk.UpToDate);
        return (ReplicaState.Read(StateDirectory(volume))?.Disk ?? PeerDisk.Unknown).ToString();
    }

    public bool IsOpen(string volume) => _attached.ContainsKey(volume);

    /// <summary>
    /// What this replica last followed while UpToDate: its primary's volume id and the last batch of it held durably here
    /// (the live value, else the replica state file's). Empty for a replica that never followed one.
    /// </summary>
    public (Guid VolumeId, long Sequence) FollowedOf(string volume) => FollowedBasisOf(volume) is { } basis ? (basis.VolumeId, basis.Sequence) : default;

    /// <summary>As <see cref="FollowedOf"/>, with the incarnation of the primary that numbered that batch: the basis of the resyncs after a failover.</summary>
    private HistoryBasis? FollowedBasisOf(string volume)
    {
        if (_attached.TryGetValue(volume, out var attached) && attached.Followed is { } followed) return followed;
        return ReplicaState.Read(StateDirectory(volume)) is { Disk: PeerDisk.UpToDate } state
            ? new HistoryBasis(state.PrimaryVolumeId, state.PrimaryIncarnation, state.AppliedSequence)
            : null;
    }

    private ReplicaSink SinkOf(Attached attached) =>
        new(CacheOf(attached.Volume), StateDirectory(attached.Volume.Definition.Name))
        {
            Durable = basis => attached.Followed = basis,
            History = HistoryOf(attached),
        };

    /// <summary>The history of a volume open here (its write-back log and the checkpoints in its replica state), or null when it keeps none.</summary>
    private ReplicaHistory? HistoryOf(Attached attached) =>
        CacheOf(attached.Volume) is WriteBackCache cache ? new ReplicaHistory(cache, StateDirectory(attached.Volume.Definition.Name)) : null;

    /// <summary>
    /// A replica giving up its data after a split brain, or a serving primary about to take a set naming another node: no write
    /// passes from now on (<see cref="PrimaryGuard.NotPrimary"/>), and a FLUSH does not wait for quorum (a primary giving up its data
    /// has lost quorum to the winner's set; under suspend-io it would wait for ever). Its clients are gone and no new one is let in by
    /// then. Returns the guard it had, for <see cref="RestoreGuard"/> should the change fail; null when it was fenced already.
    /// </summary>
    public PrimaryGuard? TakeGuard(string volume, string reason)
    {
        if (!_attached.TryGetValue(volume, out var attached)) return null;
        var guard = attached.Volume.Guard;
        if (guard is { GuardsPrimary: false }) return null;
        attached.Volume.Guard = PrimaryGuard.NotPrimary(reason);
        return guard;
    }

    /// <summary>Undoes <see cref="TakeGuard"/> after a failed change: the guard back on a primary, a secondary's fence on a secondary.</summary>
    public void RestoreGuard(string volume, PrimaryGuard? guard)
    {
        if (!_attached.TryGetValue(volume, out var attached)) return;
        if (!attached.Set.IsPrimary(settings.NodeName))
            attached.Volume.Guard = PrimaryGuard.NotPrimary(SecondaryRefusal(volume, attached.Set));
        else if (guard is not null && attached.Volume.Guard?.GuardsPrimary != true)
            attached.Volume.Guard = guard;
    }

    /// <summary>Whether this node serves the volume as its primary now (its set names it and its peers confirmed that).</summary>
    public bool IsServingPrimary(string volume) =>
        _attached.TryGetValue(volume, out var attached) && attached.Set.IsPrimary(settings.NodeName) && attached.Confirmed;

    /// <summary>The newest point of this node's own history that is comparable (see <see cref="ReplicaHistory"/>), or null.</summary>
    public HistoryBasis? OwnHistoryBasis(string volume) =>
        _attached.TryGetValue(volume, out var attached) && HistoryOf(attached) is { } history && history.PositionIn(history.VolumeId, Guid.Empty) is { } position
            ? new HistoryBasis(history.VolumeId, Guid.Empty, position)
            : null;

    /// <summary>How many blocks this node's own log says changed since batch <paramref name="sequence"/> of its own history; null when it cannot tell.</summary>
    public async Task<long?> OwnChangesSinceAsync(string volume, long sequence) =>
        _attached.TryGetValue(volume, out var attached) && HistoryOf(attached) is { } history &&
        await history.ChangedSinceAsync(history.VolumeId, Guid.Empty, sequence) is { } changed
            ? ReplicaHistory.CountOf(changed)
            : null;

    /// <summary>This replica's answer to a former primary comparing against a point of its history (<see cref="ReplicaHistory.AnswerAsync"/>); null when it cannot tell.</summary>
    public async Task<HistoryAnswer?> AnswerHistoryAsync(string volume, HistoryBasis basis, Guid asker) =>
        _attached.TryGetValue(volume, out var attached) && HistoryOf(attached) is { } history ? await history.AnswerAsync(basis, asker) : null;

    /// <summary>
    /// A split-brain policy kept this node's data over its peers': every peer may hold writes of the other side, so every
    /// block is marked for each, narrowed at its connect to what either changed since this node's <paramref name="basis"/>
    /// (null: a full resync). Done before the new replica set is recorded, so no peer connects under it unmarked.
    /// </summary>
    public async Task MarkAllOutOfSyncAsync(string volume, HistoryBasis? basis)
    {
        await _changes.WaitAsync();
        try
        {
            if (!_attached.TryGetValue(volume, out var attached)) throw new InvalidOperationException($"volume {volume} is not open on this node");
            foreach (var link in attached.Links) link.MarkAllOutOfSync(basis);
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>The replicated volumes open on this node.</summary>
    public IReadOnlyList<string> OpenVolumes() => [.. _attached.Keys];

    /// <summary>The links of a primary volume, with their peers' status (empty on a secondary).</summary>
    public IReadOnlyList<PeerStatus> LinksOf(string volume) =>
        _attached.TryGetValue(volume, out var attached) ? [.. attached.Shipping.Select(l => l.Status)] : [];

    /// <summary>The sink of a secondary replica here, for a primary connecting under this node's own replica set (its epoch), else null.</summary>
    private ReplicaSink? Resolve(string volume, long epoch, string primary)
    {
        if (!_attached.TryGetValue(volume, out var attached) || attached.Sink is not { } sink) return null;
        if (attached.Set.Epoch != epoch || attached.Set.Primary != primary)
        {
            _logger.LogWarning("volume {Name}: refused a data connection from {Primary} under epoch {Epoch}: this node follows {Set}", volume, primary, epoch, attached.Set);
            return null;
        }
        return sink;
    }

    public void Opened(Volume volume)
    {
        if (volume.Definition.Replicas is not { } set) return;
        var attached = new Attached(volume, set);
        // Batches after the last one recovered may have been renumbered by a crash: this node's own history is compared no later (ReplicaHistory).
        if (CacheOf(volume) is WriteBackCache cache) ReplicaHistory.RecordOpen(StateDirectory(volume.Definition.Name), cache.Recovery.NextSequence - 1);
        _attached[volume.Definition.Name] = attached;
        Enter(attached);
    }

    /// <summary>A secondary stops taking its primary's data (its cache is about to close); a primary's links stay until it is closed.</summary>
    public async Task ClosingAsync(string volume)
    {
        ReplicaSink? sink = null;
        await _changes.WaitAsync();
        try
        {
            if (_attached.TryGetValue(volume, out var attached))
            {
                attached.Closing = true;
                (sink, attached.Sink) = (attached.Sink, null);
            }
        }
        finally
        {
            _changes.Release();
        }
        // Outside the lock, as a primary's links leave (ClosedAsync): a revocation waits for a frame being applied over a slow log.
        if (sink is not null) await sink.RevokeAsync();
    }

    /// <summary>
    /// The volume is closed: a primary's links go only now, after the close wrote the cache's last batches,
    /// so they are shipped or recorded as missed and a clean restart resyncs only what a peer lacks.
    /// </summary>
    public async Task ClosedAsync(string volume)
    {
        Attached? attached;
        await _changes.WaitAsync();
        try
        {
            _attached.TryRemove(volume, out attached);
        }
        finally
        {
            _changes.Release();
        }
        // Outside the lock: once removed nothing else reaches these links, and a link's leave waits up to the ack timeout for
        // its last frames. Under the lock, a node's stop closed its replicated volumes one after another, timeout after timeout.
        if (attached is not null) await LeaveAsync(attached);
        catalog.Serve(volume);
    }

    /// <summary>A volume open here got a new replica set: its role follows (links started or stopped, the front told).</summary>
    public async Task ApplyAsync(string volume, ReplicaSet set)
    {
        await _changes.WaitAsync();
        try
        {
            await ApplyLockedAsync(volume, set);
        }
        finally
        {
            _changes.Release();
        }
    }

    private async Task ApplyLockedAsync(string volume, ReplicaSet set)
    {
        if (!_attached.TryGetValue(volume, out var attached)) return;
        var wasPrimary = attached.Set.IsPrimary(settings.NodeName);
        var isPrimary = set.IsPrimary(settings.NodeName);
        if (wasPrimary == isPrimary && attached.Set.Nodes.SequenceEqual(set.Nodes))
        {
            // A secondary that follows another primary now takes nothing more from the one it followed: its
            // connections end before the new set is in force (the new primary connects under the new epoch).
            var primaryChanged = !isPrimary && attached.Set.Primary != set.Primary;
            if (primaryChanged) await RevokeSinkAsync(attached);
            attached.Set = set;
            if (primaryChanged && !attached.Closing) attached.Sink = SinkOf(attached);
            foreach (var link in attached.Links)
            {
                link.Protocol = ProtocolOf(set);
                link.Epoch = set.Epoch;
            }
            if (!isPrimary)
            {
                catalog.Refuse(volume, SecondaryRefusal(volume, set));
                attached.Volume.Guard = PrimaryGuard.NotPrimary(SecondaryRefusal(volume, set));
            }
            return;
        }
        await LeaveAsync(attached);
        var identical = isPrimary && !wasPrimary && attached.Set.Epoch + 1 == set.Epoch ? attached.Set.IdenticalPeersOf(settings.NodeName) : [];
        attached.Set = set;
        attached.Confirmed = true; // a change made by the cluster is the cluster's current view
        // A new primary does not know yet how its peers differ from it (each may hold batches of the former
        // primary the other lacks): it marks them in full, and at each peer's connect both logs narrow that to
        // the blocks either changed since the last former-primary batch both hold (ReplicaHistory); the peers a
        // clean demotion just before found holding exactly its data need nothing.
        Enter(attached, fullResync: isPrimary && !wasPrimary, identical);
    }

    /// <summary>
    /// The peers agree this node is still the volume's primary (or none could be asked): it ships to its peers and the front serves it.
    /// With <paramref name="markAll"/> (a split-brain policy kept this node's data over its peers') every peer's link starts with every
    /// block marked, narrowed at connect from that point of this node's history (null in it: a full resync); see <see cref="MarkAllOutOfSyncAsync"/>.
    /// </summary>
    public async Task ConfirmAsync(string volume, FullMark? markAll = null)
    {
        await _changes.WaitAsync();
        try
        {
            if (!_attached.TryGetValue(volume, out var attached) || attached.Confirmed) return;
            attached.Confirmed = true;
            if (attached.Set.IsPrimary(settings.NodeName)) Enter(attached, markAll: markAll);
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>
    /// A primary that opened here stays unconfirmed (no NBD client, nothing shipped) for <paramref name="why"/>, which its NBD
    /// refusals and /health give (<see cref="UnconfirmedReason"/>); null: the reason is gone (its peers are being asked again).
    /// </summary>
    public async Task HoldUnconfirmedAsync(string volume, string? why)
    {
        await _changes.WaitAsync();
        try
        {
            if (!_attached.TryGetValue(volume, out var attached) || attached.Confirmed || attached.Unconfirmed == why) return;
            attached.Unconfirmed = why;
            if (attached.Set.IsPrimary(settings.NodeName)) Enter(attached);
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>Why the primary of <paramref name="volume"/> here is not confirmed, beyond the wait for its peers' answers; null if it is, or is not primary.</summary>
    public string? UnconfirmedReason(string volume) =>
        _attached.TryGetValue(volume, out var attached) && !attached.Confirmed && attached.Set.IsPrimary(settings.NodeName) ? attached.Unconfirmed : null;

    /// <summary>Every block marked for every peer, narrowed at connect from <paramref name="Basis"/> (null: a full resync).</summary>
    public sealed record FullMark(HistoryBasis? Basis);

    private void Enter(Attached attached, bool fullResync = false, IReadOnlyList<string>? identical = null, FullMark? markAll = null)
    {
        var name = attached.Volume.Definition.Name;
        var set = attached.Set;
        Directory.CreateDirectory(StateDirectory(name));
        if (!set.IsPrimary(settings.NodeName))
        {
            catalog.Refuse(name, SecondaryRefusal(name, set));
            attached.Volume.Guard = PrimaryGuard.NotPrimary(SecondaryRefusal(name, set));
            if (!attached.Closing) attached.Sink = SinkOf(attached);
            _logger.LogInformation("volume {Name}: secondary of {Primary} (protocol {Protocol}, epoch {Epoch})", name, set.Primary, set.Protocol, set.Epoch);
            return;
        }
        // A volume on its way down starts no links (a confirmation or promotion can come in while it closes): they would
        // resync its peers from a cache that is closing, and be cut off.
        if (attached.Closing)
        {
            attached.Volume.Guard = PrimaryGuard.NotPrimary("it is a replicated volume that is closing on this node");
            return;
        }
        // Until its peers confirm nobody was promoted meanwhile (ReplicatedVolumes.ReconcileAsync), a
        // primary that has just opened neither takes NBD clients nor ships to its peers: it may have been
        // demoted while away, and its stale data must not reach a replica of the new primary.
        if (!attached.Confirmed)
        {
            var unconfirmed = attached.Unconfirmed is { } why
                ? $"it is a replicated volume whose primary role is not confirmed: {why}"
                : "it is a replicated volume whose primary role is being confirmed with its peers; try again shortly";
            catalog.Refuse(name, unconfirmed);
            attached.Volume.Guard = PrimaryGuard.NotPrimary(unconfirmed);
            return;
        }
        attached.Volume.Guard = GuardOf(attached);
        var basis = markAll is not null ? markAll.Basis
            : fullResync && FollowedBasisOf(name) is { VolumeId: var followed } held && followed != Guid.Empty ? held : null;
        if (markAll is not null) (fullResync, identical) = (true, null);
        // A primary follows nobody: what it followed as a secondary before says nothing about it from now on.
        attached.Followed = null;
        var cache = CacheOf(attached.Volume) as WriteBackCache
                    ?? throw new InvalidOperationException($"volume {name} is replicated but not write-back; replication ships the write-back log");
        foreach (var peer in set.Secondaries())
        {
            var link = new ReplicaLink(new ReplicaLinkOptions
            {
                Volume = name,
                PeerNode = peer,
                ResolvePeer = ct => endpoints.ResolveAsync(peer, ct),
                Protocol = ProtocolOf(set),
                Epoch = set.Epoch,
                PrimaryNode = settings.NodeName,
                ResyncBytesPerSecond = settings.Replication.ResyncRate,
                StateDirectory = Path.Combine(StateDirectory(name), "peer-" + peer),
                MaxLagBytes = settings.Replication.MaxLag,
                AckTimeout = settings.Replication.AckTimeout,
                CatchUpMaxLogRatio = settings.Replication.CatchUpRatio,
                // A peer in sync again has every write: its unshared-writes mark goes now, not at the reconciler's next round
                // (seconds later): a primary killed meanwhile would find that peer's legitimate promotion a split brain.
                PeerInSync = () => ClearMarksSafely(name),
                PeerKnownIdentical = identical?.Contains(peer) == true,
                History = HistoryOf(attached),
            }, cache, loggers.CreateLogger($"ActorCache.Replication.{name}.{peer}"));
            // What this node held of the former primary's data: both logs narrow the resync from there (ReplicaHistory).
            if (fullResync && identical?.Contains(peer) != true) link.MarkAllOutOfSync(basis);
            else if (identical?.Contains(peer) == true) _logger.LogInformation("volume {Name}: {Peer} held exactly this node's data at the clean demotion before; no resync", name, peer);
            link.Start();
            attached.Links.Add(link);
        }
        attached.Shipping = [.. attached.Links];
        catalog.Serve(name);
        _logger.LogInformation("volume {Name}: primary, replicating to {Peers} (protocol {Protocol}, epoch {Epoch})", name,
            string.Join(", ", set.Secondaries()), set.Protocol, set.Epoch);
    }

    public static string SecondaryRefusal(string volume, ReplicaSet set) => set.Primary.Length == 0
        ? $"it is a secondary replica on this node and no node is its primary now; promote one (actorcache volume promote {volume} --node NODE)"
        : $"it is a secondary replica on this node; its primary is node {set.Primary}: connect to that node's NBD listener";

    /// <summary>The guard of a primary: quorum (three or more replicas, quorum = majority) and the unshared-writes mark.</summary>
    private PrimaryGuard GuardOf(Attached attached)
    {
        var name = attached.Volume.Definition.Name;
        var quorum = settings.Replication.Quorum && attached.Set.Nodes.Length >= 3;
        var majority = attached.Set.Nodes.Length / 2 + 1;
        string? last = null;
        var lastAt = 0L;
        var marked = new HashSet<string>(attached.Set.Secondaries().Where(peer => File.Exists(UnsharedMark(name, peer))));
        var unloggedOf = CacheOf(attached.Volume) as WriteBackCache;
        return new PrimaryGuard(fresh =>
        {
            if (!quorum) return null;
            var now = Environment.TickCount64;
            if (!fresh && now - Volatile.Read(ref lastAt) < 500) return Volatile.Read(ref last);
            // This node, and every peer whose link is connected and whose node the cluster's failure detector
            // reaches (a peer still resyncing counts: it proves this side of any cut holds the majority, and
            // it gets every write; the failure detector notices a silent peer when no data is on the way).
            var links = attached.Shipping;
            var reached = 1;
            for (var i = 0; i < links.Length; i++)
                if (links[i].IsConnected && endpoints.IsReachable(links[i].PeerNode)) reached++;
            var lost = reached >= majority ? null
                : $"it reaches {reached} of its {attached.Set.Nodes.Length} replicas ({majority} needed); writes " +
                  (settings.Replication.SuspendWithoutQuorum ? "wait" : "fail") + " until a majority is back";
            Volatile.Write(ref last, lost);
            Volatile.Write(ref lastAt, now);
            return lost;
        }, settings.Replication.SuspendWithoutQuorum, () =>
        {
            var links = attached.Shipping;
            // At every FLUSH/FUA: no status record built, nothing allocated.
            for (var i = 0; i < links.Length; i++)
            {
                if (links[i].IsStreamingUpToDate) continue;
                lock (marked)
                    if (!marked.Contains(links[i].PeerNode)) return true;
            }
            return false;
        }, () =>
        {
            foreach (var link in attached.Shipping)
            {
                if (link.Status is { Connection: PeerConnection.Connected, Disk: PeerDisk.UpToDate, Resync: null }) continue;
                var peer = link.Status.Node;
                lock (marked)
                {
                    if (marked.Contains(peer)) continue;
                    WriteMark(UnsharedMark(name, peer));
                    marked.Add(peer);
                }
                _logger.LogWarning("volume {Name}: a FLUSH completed while {Peer} lacked data; marked, so that {Peer} promoted meanwhile is found as split brain, not resynced over",
                    name, peer, peer);
            }
        }, () =>
        {
            var links = attached.Shipping;
            var unlogged = unloggedOf?.UnloggedBytes ?? 0;
            for (var i = 0; i < links.Length; i++)
                if (PrimaryGuard.PeerLags(links[i].HeldBytes, unlogged, settings.Replication.MaxLag)) return true;
            return false;
        }, settings.Replication.AckTimeout);
    }

    private readonly ConcurrentDictionary<string, string> _splitBrain = new(StringComparer.Ordinal); // found here: this node refused the peer's newer set
    private readonly ConcurrentDictionary<string, string> _splitBrainSeen = new(StringComparer.Ordinal); // reported by the peer that refused this node's

    /// <summary>Records that this node refused <paramref name="peer"/>'s newer replica set of <paramref name="volume"/> (split brain); false when known already.</summary>
    public bool MarkSplitBrain(string volume, string peer) => _splitBrain.TryAdd(volume, peer);

    public void ClearSplitBrain(string volume) => _splitBrain.TryRemove(volume, out _);

    /// <summary>The peer that reports split brain with this node now (it refused this node's set), or null: shown here too, decided there.</summary>
    public void SeeSplitBrain(string volume, string? peer)
    {
        if (peer is null) _splitBrainSeen.TryRemove(volume, out _);
        else _splitBrainSeen[volume] = peer;
    }

    /// <summary>The node this node refused as the newer primary of <paramref name="volume"/> (what it tells others), or null.</summary>
    public string? OwnSplitBrainWith(string volume) => _splitBrain.GetValueOrDefault(volume);

    /// <summary>The node this node's replica of <paramref name="volume"/> is in split brain with, found here or reported by it, or null.</summary>
    public string? SplitBrainWith(string volume) => _splitBrain.GetValueOrDefault(volume) ?? _splitBrainSeen.GetValueOrDefault(volume);

    /// <summary>The file that says this node, as primary, acknowledged a FLUSH that <paramref name="peer"/> lacked (DATA_DIR/replicas/VOL/unshared-PEER).</summary>
    public string UnsharedMark(string volume, string peer) => Path.Combine(StateDirectory(volume), "unshared-" + peer);

    /// <summary>This node acknowledged FLUSHes that <paramref name="peer"/> may lack.</summary>
    public bool HasUnsharedWrites(string volume, string peer) => File.Exists(UnsharedMark(volume, peer));

    /// <summary>Forgets every mark of the volume (its data was discarded, or it became a secondary without any).</summary>
    public void ClearUnshared(string volume)
    {
        if (!Directory.Exists(StateDirectory(volume))) return;
        foreach (var mark in Directory.GetFiles(StateDirectory(volume), "unshared-*")) File.Delete(mark);
    }

    /// <summary>On the primary: the marks of peers that are connected, UpToDate and lack nothing go (they have every write again).</summary>
    public void ClearMarksOfPeersInSync(string volume)
    {
        if (!_attached.TryGetValue(volume, out var attached) || !attached.Set.IsPrimary(settings.NodeName)) return;
        var cleared = new List<string>();
        foreach (var link in attached.Shipping)
        {
            if (!InSync(link) || !File.Exists(UnsharedMark(volume, link.PeerNode))) continue;
            File.Delete(UnsharedMark(volume, link.PeerNode));
            cleared.Add(link.PeerNode);
        }
        if (cleared.Count == 0) return;
        if (attached.Volume.Guard?.GuardsPrimary == true) attached.Volume.Guard = GuardOf(attached);
        // A FLUSH that completed on the old guard between the check above and the new guard skipped the mark (the old guard counted
        // the peer marked already): a peer that is not in sync any more gets its mark back.
        foreach (var link in attached.Shipping)
            if (cleared.Contains(link.PeerNode) && !InSync(link)) WriteMark(UnsharedMark(volume, link.PeerNode));

        static bool InSync(ReplicaLink link) => link.Status is { Connection: PeerConnection.Connected, Disk: PeerDisk.UpToDate, OutOfSyncBytes: 0, Resync: null };
    }

    private void ClearMarksSafely(string volume)
    {
        try
        {
            ClearMarksOfPeersInSync(volume);
            // Every peer follows this node's numbering now: its own history needs no floor (ReplicaHistory).
            if (_attached.TryGetValue(volume, out var attached) && attached.Set.IsPrimary(settings.NodeName) && attached.Shipping is { Length: > 0 } links &&
                links.All(l => l.IsInSync))
                ReplicaHistory.ForgetFloor(StateDirectory(volume));
        }
        catch (Exception e)
        {
            _logger.LogWarning("volume {Name}: removing the unshared-writes mark of a peer in sync failed (the reconciler tries again): {Reason}", volume, e.Message);
        }
    }

    /// <summary>Creates a small file durably (the file and its directory entry fsynced) before a FLUSH that needs it is acknowledged.</summary>
    private static void WriteMark(string path)
    {
        using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.WriteThrough))
        {
            file.Write(System.Text.Encoding.UTF8.GetBytes(DateTimeOffset.UtcNow.ToString("O") + "\n"));
            file.Flush(flushToDisk: true);
        }
        if (Blocks.LibC.SyncDirectory(Path.GetDirectoryName(path)!) is var errno and not 0)
            throw new Blocks.BlockTargetException(Blocks.BlockError.Io, $"cannot make {path} durable (errno {errno})");
    }

    /// <summary>Why a volume open here as primary has no quorum now, or null (it has, or needs none).</summary>
    public string? QuorumLost(string volume) =>
        _attached.TryGetValue(volume, out var attached) ? attached.Volume.Guard?.QuorumLost(fresh: true) : null;

    private static async Task LeaveAsync(Attached attached)
    {
        // Fenced, not unguarded: a client still attached must not write into a cache its next role's resync writes into.
        attached.Volume.Guard = PrimaryGuard.NotPrimary("it is a replicated volume that is changing its role on this node");
        attached.Shipping = [];
        foreach (var link in attached.Links) await link.DisposeAsync();
        attached.Links.Clear();
        await RevokeSinkAsync(attached);
    }

    /// <summary>The secondary's connections end and apply nothing more (see <see cref="ReplicaSink"/>).</summary>
    private static async Task RevokeSinkAsync(Attached attached)
    {
        if (attached.Sink is not { } sink) return;
        attached.Sink = null;
        await sink.RevokeAsync();
    }

    private static Blocks.IBlockTarget CacheOf(Volume volume) => volume.Stack;

    public static ReplicationProtocol ProtocolOf(ReplicaSet set) => set.Protocol switch
    {
        "A" => ReplicationProtocol.A,
        "B" => ReplicationProtocol.B,
        _ => ReplicationProtocol.C,
    };

    /// <summary>CRC32C of each 4 KiB block from <paramref name="fromBlock"/> of the volume open here, read through its stack.</summary>
    public async Task<uint[]> ChecksumsAsync(string volume, long fromBlock, int count, CancellationToken ct)
    {
        if (!_attached.TryGetValue(volume, out var attached)) throw new InvalidOperationException($"volume {volume} is not open on node {settings.NodeName}");
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(count * 4096);
        try
        {
            var data = buffer.AsMemory(0, count * 4096);
            await attached.Volume.Stack.ReadAsync(fromBlock * 4096, data, ct);
            var crcs = new uint[count];
            for (var i = 0; i < count; i++) crcs[i] = Blocks.Crc32C.Compute(data.Span.Slice(i * 4096, 4096));
            return crcs;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Before a clean demotion of the primary volume here (its NBD clients gone): flushes it and waits up to
    /// <paramref name="timeout"/> until every peer holds every batch durably with nothing out of sync. Returns the
    /// peers that do; none when the flush fails (no quorum, a failing log): the demotion is then not clean.
    /// </summary>
    public async Task<string[]> SettleAsync(string volume, TimeSpan timeout, CancellationToken ct)
    {
        if (!_attached.TryGetValue(volume, out var attached) || !attached.Set.IsPrimary(settings.NodeName)) return [];
        var holding = await HoldingAsync(attached, timeout, ct);
        // This node's own record: UpToDate through its last batch. As a secondary later it is known identical to the peers in
        // sync now, and a promotion elsewhere compares with it: after a demotion that was not clean this node holds newer data.
        if (CacheOf(attached.Volume) is WriteBackCache cache)
            new ReplicaState(PeerDisk.UpToDate, cache.Barrier.Local.DurableSequence, cache.VolumeId, DateTimeOffset.UtcNow).Write(StateDirectory(volume));
        return holding;
    }

    private async Task<string[]> HoldingAsync(Attached attached, TimeSpan timeout, CancellationToken ct)
    {
        var volume = attached.Volume.Definition.Name;
        try
        {
            // Bounded: without quorum under suspend-io a FLUSH waits for a majority that may not come.
            await attached.Volume.FlushAsync(ct).AsTask().WaitAsync(timeout, ct);
        }
        catch (Exception e) when (e is Blocks.BlockTargetException or TimeoutException)
        {
            _logger.LogWarning("volume {Name}: the FLUSH before the demotion failed ({Reason}); the demotion is not clean (the next primary resyncs its peers in full)",
                volume, e.Message);
            return [];
        }
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var links = attached.Shipping;
            var holding = links.Where(l => l.HoldsEverything).Select(l => l.PeerNode).ToArray();
            if (holding.Length == links.Length || watch.Elapsed >= timeout) return holding;
            await Task.Delay(10, ct);
        }
    }

    /// <summary>A primary about to be demoted takes no new NBD client (those connected are disconnected next); undone by <see cref="ServeAgain"/> if the demotion fails.</summary>
    public void RefuseWhileDemoting(string volume) =>
        catalog.Refuse(volume, "it is a replicated volume being demoted on this node; connect to its next primary");

    /// <summary>A replica about to give up its data after a split brain takes no new NBD client; undone by <see cref="ServeAgain"/> if that fails.</summary>
    public void RefuseWhileDiscarding(string volume) =>
        catalog.Refuse(volume, "it is a replicated volume giving up its data after a split brain on this node; connect to its primary");

    public void ServeAgain(string volume)
    {
        if (_attached.TryGetValue(volume, out var attached) && attached.Set.IsPrimary(settings.NodeName) && attached.Confirmed) catalog.Serve(volume);
    }

    /// <summary>The links of a primary volume here, by peer node.</summary>
    public IReadOnlyDictionary<string, ReplicaLink> LinksByPeer(string volume) =>
        _attached.TryGetValue(volume, out var attached) ? attached.Shipping.ToDictionary(l => l.Status.Node) : new Dictionary<string, ReplicaLink>();

    /// <summary>The size of a volume open here.</summary>
    public long SizeOf(string volume) => _attached.TryGetValue(volume, out var attached) ? attached.Volume.Size : 0;

    /// <summary>Every link of a primary volume here disconnects and connects again: the reconnection resyncs what the peer lacks.</summary>
    public void Reconnect(string volume)
    {
        if (!_attached.TryGetValue(volume, out var attached)) return;
        foreach (var link in attached.Shipping)
        {
            link.Disconnect();
            link.Connect();
        }
    }

    public void SetResyncRate(string volume, long bytesPerSecond)
    {
        if (!_attached.TryGetValue(volume, out var attached)) return;
        foreach (var link in attached.Links) link.ResyncBytesPerSecond = bytesPerSecond;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var attached in _attached.Values) await LeaveAsync(attached);
        _attached.Clear();
        if (_receiver is { } receiver) await receiver.DisposeAsync();
    }

    private sealed class Attached(Volume volume, ReplicaSet set)
    {
        public Volume Volume { get; } = volume;
        public ReplicaSet Set { get; set; } = set;
        public List<ReplicaLink> Links { get; } = [];
        /// <summary>The links as an array replaced whole: read by I/O threads (the quorum fence) while roles change.</summary>
        public volatile ReplicaLink[] Shipping = [];
        public ReplicaSink? Sink { get; set; }
        public bool Confirmed { get; set; }
        /// <summary>
        /// Set when its volume starts closing (<see cref="ClosingAsync"/>): a role change meanwhile gives it no new sink, which would
        /// apply a primary's frames to a cache on its way down (the old sink is revoked outside the lock, so one could come in between),
        /// and no links.
        /// </summary>
        public bool Closing { get; set; }
        /// <summary>Why the primary is held unconfirmed (<see cref="HoldUnconfirmedAsync"/>), or null.</summary>
        public string? Unconfirmed { get; set; }
        /// <summary>The primary volume this secondary followed while UpToDate, its incarnation and its last batch held durably here (replaced whole: read by other threads).</summary>
        public volatile HistoryBasis? Followed;
    }
}
