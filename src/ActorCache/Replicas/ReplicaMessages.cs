namespace ActorCache.Replicas;

// Control messages between the nodes, over Akka remoting: those about one volume's replica (IReplicaCommand) go to its
// sharded entity (ReplicaEntity), the node-wide ones to the node's replica manager (/user/replicas). They carry
// definitions and states, never volume data: data goes over the replicators' own connections.

/// <summary>Create this node's replica of a new replicated volume; answered with <see cref="ReplicaCreated"/> or <see cref="ReplicaRefused"/>.</summary>
public sealed record CreateReplica(string Name, long Size, string Mode, ReplicaSet Replicas) : IReplicaCommand;

public sealed record ReplicaCreated(string Node, string Name);

public sealed record ReplicaRefused(string Node, string Name, string Reason);

/// <summary>Remove this node's replica again (a creation that failed elsewhere); answered with <see cref="ReplicaRemoved"/> or <see cref="ReplicaRefused"/>.</summary>
public sealed record RemoveReplica(string Name) : IReplicaCommand;

public sealed record ReplicaRemoved(string Node, string Name);

/// <summary>
/// What this node has of a replicated volume; answered with <see cref="ReplicaView"/>. Asked of the node's replica manager, not
/// through sharding: the decisions that read it (a restarted primary's confirmation, a promotion, a split-brain policy) are
/// taken when a node has just died or come back, exactly when a shard home may be unknown and the coordinator moving.
/// </summary>
public sealed record GetReplicaView(string Name);

/// <param name="Replicas">The replica set as this node has it recorded (null: this node has no such replicated volume).</param>
/// <param name="Role">"primary" or "secondary".</param>
/// <param name="Disk">The node's own disk state of the volume (UpToDate, Inconsistent, Outdated, Unknown).</param>
/// <param name="Online">Whether its volume is open on the node.</param>
public sealed record ReplicaView(string Node, string Name, ReplicaSet? Replicas, string Role, string Disk, bool Online)
{
    /// <summary>The primary volume this replica last followed while UpToDate, and its last batch held durably here (see <see cref="ReplicaRoles.FollowedOf"/>).</summary>
    public Guid FollowedVolumeId { get; init; }

    public long FollowedSequence { get; init; }

    /// <summary>The node this replica is in split brain with (it refused to adopt that node's newer set), or null.</summary>
    public string? SplitBrainWith { get; init; }
}

/// <summary>
/// A newer replica set (a promotion, a demotion, a protocol switch): the node records and applies it; answered with
/// <see cref="ReplicaView"/>. Sent to the node's replica manager, not through sharding: a promotion spreads it right after
/// the old primary died, and a region that has no shard home for the peer (restarted since) would hold it until the shard
/// coordinator, perhaps on the dead node, has moved; meanwhile the peer refuses the new primary's link and writes lack quorum.
/// </summary>
public sealed record AdoptReplicaSet(string Name, ReplicaSet Replicas);

/// <summary>The replication data endpoint of a node (HOST:PORT); answered with <see cref="DataEndpoint"/>.</summary>
public sealed record GetDataEndpoint
{
    public static readonly GetDataEndpoint Instance = new();
}

public sealed record DataEndpoint(string Node, string? Address);

/// <summary>The primary's view of every replica of a volume; answered with <see cref="PeerStatusList"/> or <see cref="ReplicaRefused"/>.</summary>
public sealed record GetPeerStatus(string Name) : IReplicaCommand;

// An array, not IReadOnlyList: Akka's JSON serializer cannot make the list type a collection expression creates.
public sealed record PeerStatusList(string Name, PeerRow[] Peers);

/// <summary>One replica as <c>peer status</c> shows it (the JSON fields of the issue: node, role, connection, disk, outOfSyncBytes, resync, splitBrain).</summary>
public sealed record PeerRow(string Node, string Role, string Connection, string Disk, long OutOfSyncBytes, PeerResync? Resync, bool SplitBrain,
    long LagBatches, long LagBytes, double AckP50Micros, double AckP99Micros, string? Problem);

public sealed record PeerResync(long Done, long Total, double BytesPerSecond);

/// <summary>Promote this node's replica to primary (sent to the node that is to become primary); answered with <see cref="ReplicaView"/> or <see cref="ReplicaRefused"/>.</summary>
public sealed record PromoteReplica(string Name, bool Force) : IReplicaCommand;

/// <summary>Demote this node's primary replica to secondary; answered with <see cref="ReplicaView"/> or <see cref="ReplicaRefused"/>.</summary>
public sealed record DemoteReplica(string Name) : IReplicaCommand;

/// <summary>Switch a volume's protocol (sent to its primary); answered with <see cref="ReplicaView"/> or <see cref="ReplicaRefused"/>.</summary>
public sealed record SwitchProtocol(string Name, string Protocol) : IReplicaCommand;

/// <summary>CRC32C of each 4 KiB block of a range of this node's replica (online verify); answered with <see cref="BlockChecksums"/> or <see cref="ReplicaRefused"/>.</summary>
public sealed record GetBlockChecksums(string Name, long FromBlock, int Count) : IReplicaCommand;

public sealed record BlockChecksums(string Node, uint[] Crcs);

/// <summary>Asks a node to hand each volume it is primary of to an in-sync peer before it leaves; answered with <see cref="HandOffs"/>.</summary>
public sealed record HandOffPrimaries
{
    public static HandOffPrimaries Instance { get; } = new();
}

public sealed record HandOffs(string Node, HandOff[] Volumes);

/// <summary>One volume's hand-off: the node that is its primary now, or why it stayed here.</summary>
public sealed record HandOff(string Volume, string? To, string? Problem);

/// <summary>
/// Split brain, discard-least-changes: how many blocks has this node's replica changed since it held <paramref name="Basis"/> (a
/// point of the asking former primary's history, whose volume id is <paramref name="Asker"/>)? Answered with
/// <see cref="SplitBrainChanges"/>, or <see cref="ReplicaRefused"/> when its log cannot tell.
/// </summary>
public sealed record CountChangesSince(string Name, ActorCache.Replication.HistoryBasis Basis, Guid Asker) : IReplicaCommand;

/// <param name="Sequence">The batch of the asker's history the count starts from (no later than the one asked).</param>
/// <param name="Blocks">The blocks changed here since.</param>
public sealed record SplitBrainChanges(string Node, long Sequence, long Blocks);
