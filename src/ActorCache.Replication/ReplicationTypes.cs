using System.Net;
using System.Text.Json.Serialization;

namespace ActorCache.Replication;

/// <summary>
/// What a FLUSH or FUA waits for beyond the local log (DESIGN §4). Plain writes are acknowledged once
/// locally accepted under every protocol: the write-back cache's promise is FLUSH/FUA (DESIGN §2), so a
/// protocol only changes what a completed FLUSH/FUA guarantees.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<ReplicationProtocol>))]
public enum ReplicationProtocol
{
    /// <summary>FLUSH waits for local durability only; peers catch up asynchronously (bounded by <see cref="ReplicaLinkOptions.MaxLagBytes"/>).</summary>
    A,
    /// <summary>FLUSH also waits until every connected, in-sync peer has received the sync point's batch into memory.</summary>
    B,
    /// <summary>FLUSH and FUA also wait until every connected, in-sync peer has the sync point's batch durably.</summary>
    C,
}

/// <summary>The link's connection state (DRBD's connection states, reduced). JSON: "standalone", "connecting", "connected".</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PeerConnection>))]
public enum PeerConnection
{
    /// <summary>Disconnected by the operator; no reconnect until <see cref="ReplicaLink.Connect"/>.</summary>
    [JsonStringEnumMemberName("standalone")] StandAlone,
    /// <summary>Trying to reach the peer (it is down, unknown, or the last connection failed).</summary>
    [JsonStringEnumMemberName("connecting")] Connecting,
    [JsonStringEnumMemberName("connected")] Connected,
}

/// <summary>DRBD's disk states, as the primary knows its peer's. JSON: "Unknown", "Inconsistent", "Outdated", "UpToDate".</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PeerDisk>))]
public enum PeerDisk
{
    Unknown,
    /// <summary>A resync is under way: the peer's data is a mix of old and new and must not be used.</summary>
    Inconsistent,
    /// <summary>Consistent but missing writes the primary made while it was away.</summary>
    Outdated,
    UpToDate,
}

public sealed record ResyncProgress(long Done, long Total, double BytesPerSecond);

/// <summary>
/// One link's view of its peer. <see cref="OutOfSyncBytes"/>: marked in the bitmap (4 KiB per block);
/// <see cref="Resync"/>: null unless a resync runs; <see cref="LagBatches"/>/<see cref="LagBytes"/>: held
/// in the send buffer, queued or shipped and not yet durable at the peer; ack latency: from shipping a
/// batch to the acknowledgement the protocol waits for (Durable under C, Received under A and B);
/// <see cref="Problem"/>: the last error, kept until the peer is in sync again.
/// </summary>
public sealed record PeerStatus(string Node, PeerConnection Connection, PeerDisk Disk, long OutOfSyncBytes, ResyncProgress? Resync,
    long LagBatches, long LagBytes, double AckLatencyP50Micros, double AckLatencyP99Micros, string? Problem);

public sealed record ReplicaLinkOptions
{
    /// <summary>
    /// A peer back after a disconnect is sent the batches it missed from this node's log (it keeps the same history and
    /// stays consistent) where the log still holds them and they are at most this many times the bytes out of sync
    /// (log bytes, headers included); else, or with 0, its blocks are resynced from the bitmap (fewer bytes, and the peer
    /// writes them in runs of up to 1 MiB instead of one by one).
    /// </summary>
    public double CatchUpMaxLogRatio { get; init; } = DefaultCatchUpMaxLogRatio;

    public const double DefaultCatchUpMaxLogRatio = 1.25;

    /// <summary>A catch-up must have less log left to ship after each such period, or it gives way to a resync (new writes add to a catch-up, not to a resync).</summary>
    public TimeSpan CatchUpGainPeriod { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The volume's name (the same on every replica).</summary>
    public required string Volume { get; init; }

    /// <summary>The secondary's node name.</summary>
    public required string PeerNode { get; init; }

    /// <summary>The secondary's data endpoint; null while unknown (the peer is down).</summary>
    public required Func<CancellationToken, ValueTask<EndPoint?>> ResolvePeer { get; init; }

    public ReplicationProtocol Protocol { get; init; } = ReplicationProtocol.C;

    /// <summary>The epoch of the replica set under which this node is primary (see <see cref="ReplicaLink.Epoch"/>).</summary>
    public long Epoch { get; init; }

    /// <summary>This node's name, sent with the epoch: the peer takes data only from the primary its own replica set names.</summary>
    public string PrimaryNode { get; init; } = "";

    /// <summary>
    /// The peer held exactly this node's data when the link was made (a clean switchover: both were in sync with the
    /// primary that handed over, see ReplicaSet.InSync). The link then starts with nothing marked and takes the peer's
    /// state at its first connect as it is, although it came from another primary: no full resync.
    /// </summary>
    public bool PeerKnownIdentical { get; init; }

    /// <summary>
    /// This node's history (its write-back log): after a failover the link narrows a full resync to what the logs say may
    /// differ (see <see cref="ReplicaLink.MarkAllOutOfSync(HistoryBasis?)"/>). Null: such a resync stays full.
    /// </summary>
    public ReplicaHistory? History { get; init; }

    /// <summary>Resync rate limit; 0 = no limit.</summary>
    public long ResyncBytesPerSecond { get; init; }

    /// <summary>Where this link keeps its persisted out-of-sync bitmap (one directory per link).</summary>
    public required string StateDirectory { get; init; }

    /// <summary>
    /// How many bytes of batches the link holds for the peer (queued or shipped but not yet durable there).
    /// Beyond it the link disconnects the peer and tracks what it misses in the bitmap, resyncing on reconnect:
    /// the flusher never waits for a slow peer.
    /// </summary>
    public long MaxLagBytes { get; init; } = 256L << 20;

    public TimeSpan ReconnectInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A connected peer that leaves a shipped frame unacknowledged this long is disconnected (so FLUSH never hangs on a dead peer).</summary>
    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Called (on the thread pool) each time the peer becomes UpToDate and joins the durability barrier: at a connect with
    /// nothing to resync, or when a resync finishes. The primary forgets then that it acknowledged FLUSHes the peer lacked.
    /// </summary>
    public Action? PeerInSync { get; init; }
}

/// <summary>
/// What a secondary volume exposes to the receiver: the target to apply to and a directory for its replica state file,
/// for as long as it follows one primary. When its role changes (promoted, closed, or another node named primary) the
/// sink is revoked: a connection made under it applies nothing more and is dropped. Without that, a connection from a
/// deposed primary (its process gone, its kernel still delivering what it had queued once a cut heals) would write
/// that primary's unacknowledged data into the new primary or into a secondary that follows it.
/// </summary>
public sealed class ReplicaSink(ActorCache.Blocks.IBlockTarget target, string stateDirectory)
{
    private readonly SemaphoreSlim _applying = new(1, 1);
    private readonly CancellationTokenSource _revoked = new();
    private volatile bool _isRevoked;

    public ActorCache.Blocks.IBlockTarget Target { get; } = target;
    public string StateDirectory { get; } = stateDirectory;

    /// <summary>
    /// Told, while UpToDate, the primary's volume id, its incarnation and its last batch this replica holds durably, after
    /// every flush that acknowledges one (before the primary hears of it): what a promotion compares between secondaries,
    /// and the basis of the resyncs after it.
    /// </summary>
    public Action<HistoryBasis>? Durable { get; init; }

    /// <summary>This replica's history (its write-back log), for checkpoints and for a new primary's narrowed resync; null: none kept, such a resync is full.</summary>
    public ReplicaHistory? History { get; init; }

    /// <summary>Cancelled once the sink is revoked: connections under it end.</summary>
    public CancellationToken Revoked => _revoked.Token;

    public bool IsRevoked => _isRevoked;

    /// <summary>Enters the application of one frame; false once revoked. Pair a true with <see cref="EndApply"/>.</summary>
    public async ValueTask<bool> BeginApplyAsync(CancellationToken cancellationToken)
    {
        await _applying.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (!_isRevoked) return true;
        _applying.Release();
        return false;
    }

    public void EndApply() => _applying.Release();

    /// <summary>
    /// Nothing is applied under this sink from now on: no frame starts, a frame being applied is waited for (a bounded
    /// while: a write stuck in a closing cache must not stall every role change of the node), then its connections end.
    /// </summary>
    public async Task RevokeAsync()
    {
        if (_isRevoked) return;
        _isRevoked = true; // a frame not begun yet sees it once it holds the gate
        if (await _applying.WaitAsync(RevokeWait).ConfigureAwait(false)) _applying.Release();
        await _revoked.CancelAsync().ConfigureAwait(false);
    }

    private static readonly TimeSpan RevokeWait = TimeSpan.FromSeconds(10);
}
