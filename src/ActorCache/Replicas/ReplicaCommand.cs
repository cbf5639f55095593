namespace ActorCache.Replicas;

/// <summary>A control message about one volume's replica on one node (create, view, adopt, promote...): it goes to that replica's sharded entity.</summary>
public interface IReplicaCommand
{
    /// <summary>The volume.</summary>
    string Name { get; }
}

/// <summary>
/// What travels through the <see cref="ReplicaShards.TypeName"/> shard regions: <paramref name="Message"/> for the replica of its
/// volume on <paramref name="Node"/>, meant for that node's run whose cluster incarnation (its member's UID) is
/// <paramref name="Incarnation"/>. A region holds messages for a shard whose home is not known yet (its node away, the shard
/// coordinator moving): one that reaches a later run of the node is refused, never acted on, and so is one that arrives after
/// its asker gave up (<see cref="DeadlineUnixMs"/>), on any run.
/// </summary>
public sealed record ReplicaCommand(string Node, long Incarnation, IReplicaCommand Message)
{
    /// <summary>How long nodes' clocks may disagree: a command is refused only this long after its deadline.</summary>
    public static readonly TimeSpan ClockAllowance = TimeSpan.FromSeconds(5);

    /// <summary>When the asker stops waiting for the answer (Unix milliseconds, its clock); 0: no deadline.</summary>
    public long DeadlineUnixMs { get; init; }

    /// <summary>Whether the asker gave up on this command longer ago than clocks may disagree.</summary>
    public bool Expired(DateTimeOffset now) => DeadlineUnixMs > 0 && now.ToUnixTimeMilliseconds() > DeadlineUnixMs + (long)ClockAllowance.TotalMilliseconds;

    /// <summary>The entity (and shard) id: <c>NODE/VOLUME</c> (node names have no slash).</summary>
    public string EntityId => ReplicaShards.EntityIdOf(Node, Message.Name);
}
