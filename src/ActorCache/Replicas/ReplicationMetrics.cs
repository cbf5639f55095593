using ActorCache.Replication;
using Prometheus;

namespace ActorCache.Replicas;

/// <summary>
/// Per peer of every volume this node is primary of (labels volume, peer): connection and disk state,
/// out-of-sync bytes, resync rate, lag and ack latency, in the node's /metrics. A link that went away
/// (the volume closed, the node demoted) leaves no series behind.
/// </summary>
public sealed class ReplicationMetrics
{
    private readonly ReplicaRoles _roles;
    private readonly Gauge _splitBrain;
    private readonly Gauge _connected, _upToDate, _outOfSync, _resyncRate, _resyncLeft, _lagBatches, _lagBytes, _ackP50, _ackP99;
    private HashSet<(string Volume, string Peer)> _exported = [];

    public ReplicationMetrics(IMetricFactory metrics, ReplicaRoles roles)
    {
        _roles = roles;
        string[] labels = ["volume", "peer"];
        Gauge PeerGauge(string name, string help) => metrics.CreateGauge(name, help, labels);
        _connected = PeerGauge("actorcache_replication_peer_connected", "1 while the peer's data connection is up.");
        _upToDate = PeerGauge("actorcache_replication_peer_up_to_date", "1 when the peer's disk is UpToDate (0: Inconsistent while resyncing, Outdated, Unknown).");
        _outOfSync = PeerGauge("actorcache_replication_out_of_sync_bytes", "Bytes the peer lacks (tracked in the out-of-sync bitmap, 4 KiB per bit).");
        _resyncRate = PeerGauge("actorcache_replication_resync_bytes_per_second", "Resync rate while a resync runs, else 0.");
        _resyncLeft = PeerGauge("actorcache_replication_resync_left_bytes", "Bytes the running resync still has to send, else 0.");
        _lagBatches = PeerGauge("actorcache_replication_lag_batches", "Log batches shipped to the peer and not yet acknowledged.");
        _lagBytes = PeerGauge("actorcache_replication_lag_bytes", "Bytes shipped to the peer and not yet acknowledged.");
        _ackP50 = PeerGauge("actorcache_replication_ack_latency_p50_seconds", "Median time from shipping a batch to the peer's acknowledgement.");
        _splitBrain = PeerGauge("actorcache_replication_split_brain", "1 while this node's replica is in split brain with the peer (both wrote since they last agreed).");
        _ackP99 = PeerGauge("actorcache_replication_ack_latency_p99_seconds", "99th percentile of the same.");
    }

    public void Update()
    {
        var now = new HashSet<(string, string)>();
        foreach (var volume in _roles.OpenVolumes())
        foreach (var peer in _roles.LinksOf(volume))
        {
            now.Add((volume, peer.Node));
            string[] labels = [volume, peer.Node];
            _connected.WithLabels(labels).Set(peer.Connection == PeerConnection.Connected ? 1 : 0);
            _upToDate.WithLabels(labels).Set(peer.Disk == PeerDisk.UpToDate ? 1 : 0);
            _outOfSync.WithLabels(labels).Set(peer.OutOfSyncBytes);
            _resyncRate.WithLabels(labels).Set(peer.Resync?.BytesPerSecond ?? 0);
            _resyncLeft.WithLabels(labels).Set(peer.Resync is { } r ? r.Total - r.Done : 0);
            _lagBatches.WithLabels(labels).Set(peer.LagBatches);
            _lagBytes.WithLabels(labels).Set(peer.LagBytes);
            _ackP50.WithLabels(labels).Set(peer.AckLatencyP50Micros / 1e6);
            _ackP99.WithLabels(labels).Set(peer.AckLatencyP99Micros / 1e6);
            _splitBrain.WithLabels(labels).Set(_roles.SplitBrainWith(volume) == peer.Node ? 1 : 0);
        }
        foreach (var (volume, peer) in _exported.Where(k => !now.Contains(k)))
            foreach (var gauge in new[] { _splitBrain, _connected, _upToDate, _outOfSync, _resyncRate, _resyncLeft, _lagBatches, _lagBytes, _ackP50, _ackP99 })
                gauge.RemoveLabelled(volume, peer);
        _exported = now;
    }

    /// <summary>
    /// For /health: a primary held unconfirmed apart from its peers, a primary without quorum, a split brain, and a primary
    /// under protocol C with no connected UpToDate peer (a FLUSH is then durable on this node alone), one line each.
    /// </summary>
    public IEnumerable<string> Problems()
    {
        foreach (var volume in _roles.OpenVolumes())
        {
            if (_roles.UnconfirmedReason(volume) is { } unconfirmed) yield return $"{volume}: primary role not confirmed: {unconfirmed}";
            if (_roles.QuorumLost(volume) is { } quorum) yield return $"{volume}: no quorum: {quorum}";
            if (_roles.SplitBrainWith(volume) is { } peer)
                yield return $"{volume}: split brain with {peer}: both acknowledged writes the other lacks; not connected. On the side to give up: " +
                             $"actorcache volume discard-my-data {volume} (its data is kept as snapshot {volume}@split-brain-TIME)";
            if (_roles.SetOf(volume) is not { Protocol: "C" } set || !set.IsPrimary(_roles.NodeName)) continue;
            var peers = _roles.LinksOf(volume);
            if (peers.Count > 0 && !peers.Any(p => p is { Connection: PeerConnection.Connected, Disk: PeerDisk.UpToDate }))
                yield return $"{volume}: protocol C but no peer is connected and UpToDate ({string.Join(", ", peers.Select(p => $"{p.Node} {p.Connection.ToString().ToLowerInvariant()} {p.Disk}"))}); " +
                             "a FLUSH is durable on this node alone";
        }
    }
}
