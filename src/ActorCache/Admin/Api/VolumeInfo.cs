namespace ActorCache.Admin.Api;

/// <summary>
/// A volume as the admin API and <c>actorcache volume list|status --json</c> show it. The field names are
/// a promise to scripts (documented in the README): fields may be added, never renamed or removed.
/// </summary>
public sealed record VolumeInfo
{
    public required string Name { get; init; }
    /// <summary>Bytes.</summary>
    public required long Size { get; init; }
    /// <summary><c>write-back</c>, <c>write-through</c> or <c>pass-through</c>.</summary>
    public required string Mode { get; init; }
    /// <summary>The mode a switch under way goes to (leaving write-back drains the log first), or null.</summary>
    public string? SwitchingTo { get; init; }
    /// <summary>Writes are refused: defined read-only, or a damaged log record.</summary>
    public required bool ReadOnly { get; init; }
    /// <summary>Open and served over NBD.</summary>
    public required bool Online { get; init; }
    /// <summary>
    /// <c>online</c> (open, served; maybe degraded or read-only, see those fields), <c>recovering</c> (opening:
    /// replaying its log, see <see cref="Recovery"/>), <c>offline</c> (could not open) or <c>unknown</c> (its actor gave no status).
    /// </summary>
    public string State { get; init; } = "online";
    /// <summary>How far the open is while the volume is recovering, else null.</summary>
    public RecoveryInfo? Recovery { get; init; }
    public string? OfflineReason { get; init; }
    /// <summary>Why the volume is degraded (a damaged log record, a backing or log refusing writes), or null.</summary>
    public string? Degraded { get; init; }
    /// <summary>The backing file or block device.</summary>
    public required string Backing { get; init; }
    /// <summary>The node created the backing (deleting the volume removes it).</summary>
    public required bool BackingCreated { get; init; }
    /// <summary>The log's open generation (0 without a log).</summary>
    public required long Generation { get; init; }
    /// <summary>Bytes whose newest version is in the ring or the log, not yet on the backing.</summary>
    public required long CachedBytes { get; init; }
    /// <summary>Log bytes not yet destaged.</summary>
    public required long LogBytes { get; init; }
    /// <summary>NBD clients connected to the volume now.</summary>
    public required int Clients { get; init; }
    /// <summary>What is wrong with the volume, one reason per entry, as <c>/health</c> says it; empty when healthy.</summary>
    public required IReadOnlyList<string> Health { get; init; }
    /// <summary>The cache's statistics, or null for a volume without a cache (pass-through, read-only, offline).</summary>
    public CacheInfo? Cache { get; init; }
    /// <summary>For a replicated volume: its replicas and this node's role; null for a volume of this node alone.</summary>
    public ReplicationInfo? Replication { get; init; }
}

/// <summary>A volume's open under way: log bytes replayed of those to replay (0 of 0 before the replay has started), the share, the seconds left (null until a rate is known).</summary>
public sealed record RecoveryInfo(long DoneBytes, long TotalBytes, int Percent, long? SecondsLeft);

/// <summary>A cache's statistics (<see cref="Cache.CacheStatistics"/>), counters since the node started.</summary>
public sealed record CacheInfo
{
    public required long CachedBlocks { get; init; }
    public required long LogBytes { get; init; }
    public required long LogCapacity { get; init; }
    public required long Generation { get; init; }
    public required long IndexBytes { get; init; }
    public required long BatchesWritten { get; init; }
    public required long Syncs { get; init; }
    public required long SyncPointRecords { get; init; }
    public required long BlocksDestaged { get; init; }
    public required long RingWaits { get; init; }
    public required long RetentionShrinks { get; init; }
    public required long CorruptRecords { get; init; }
    public required long TornTails { get; init; }
    /// <summary>Log bytes the persisted index covered at open, verified in the background since (0 after a full replay: all verified at open).</summary>
    public long ScrubTotalBytes { get; init; }
    /// <summary>Of those, bytes verified so far; equal to <see cref="ScrubTotalBytes"/> once the scrub is done.</summary>
    public long ScrubVerifiedBytes { get; init; }
    public string? BackingFailure { get; init; }
    public string? LogFailure { get; init; }
}

/// <summary>Every volume of the node, by name.</summary>
public sealed record VolumeListing(IReadOnlyList<VolumeInfo> Volumes);

/// <summary>What <c>DELETE /api/volumes/NAME</c> did.</summary>
public sealed record DeletedVolume(string Name, string Backing, bool BackingRemoved, int ClientsClosed);

/// <summary>A replicated volume's replica set as this node has it recorded, and this node's part.</summary>
/// <param name="Role">This node's: "primary" or "secondary".</param>
/// <param name="Primary">The primary's node name; empty while no node is primary (after a demotion).</param>
public sealed record ReplicationInfo(IReadOnlyList<string> Replicas, string Primary, string Protocol, long Epoch, string Role);

/// <summary><c>GET /api/volumes/NAME/peers</c> (<c>peer status</c>): one replica.</summary>
/// <param name="Connection">"local" (the node answering as primary), "connected", "connecting", "standalone", "unreachable".</param>
/// <param name="Disk">"UpToDate", "Inconsistent", "Outdated", "Unknown".</param>
/// <param name="Resync">While a resync runs: bytes done, total and rate; else null.</param>
public sealed record PeerInfo(string Node, string Role, string Connection, string Disk, long OutOfSyncBytes, ResyncInfo? Resync, bool SplitBrain,
    long LagBatches, long LagBytes, double AckLatencyP50Micros, double AckLatencyP99Micros, string? Problem);

public sealed record ResyncInfo(long Done, long Total, double BytesPerSecond);
