namespace ActorCache.Admin.Api;

/// <summary>
/// One member's shard region of replica entities, as <c>GET /api/sharding</c> and <c>actorcache sharding show --json</c> show
/// it. The field names are a promise to scripts (documented in the README): fields may be added, never renamed or removed.
/// </summary>
public sealed record ShardRegionInfo
{
    /// <summary>The member's node name.</summary>
    public required string Node { get; init; }
    /// <summary>Its Akka address, <c>akka.tcp://actorcache@HOST:PORT</c>.</summary>
    public required string Address { get; init; }
    /// <summary>The entity type of the region: <c>replica</c> (one entity per volume and node, <c>NODE/VOLUME</c>).</summary>
    public required string TypeName { get; init; }
    /// <summary>Whether the node asked reaches it.</summary>
    public required bool Reachable { get; init; }
    /// <summary>Whether the shard coordinator (a cluster singleton, on the oldest member) runs there; false for an unreachable member.</summary>
    public required bool Coordinator { get; init; }
    /// <summary>The node that answered the request.</summary>
    public required bool Self { get; init; }
    /// <summary>Its shards with their entities; empty when it did not answer (see <see cref="Problem"/>).</summary>
    public required IReadOnlyList<ShardInfo> Shards { get; init; }
    /// <summary>Why its shards are not known (unreachable, no answer within 2 s), or null.</summary>
    public string? Problem { get; init; }
}

/// <summary>A shard and the entities running in it (each replica's shard holds its one entity).</summary>
public sealed record ShardInfo
{
    public required string Shard { get; init; }
    public required IReadOnlyList<string> Entities { get; init; }
}
