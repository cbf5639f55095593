using Akka.Actor;
using Akka.Cluster.Sharding;

namespace ActorCache.Replicas;

/// <summary>
/// The replicas' cluster sharding: one entity per (volume, node), <c>NODE/VOLUME</c>, in a shard of its own, so that
/// <see cref="ReplicaPlacement"/> can put each on its node. Shard regions route the nodes' control messages to them
/// (<see cref="ReplicaCommand"/>); volume data never goes this way (it has the replicators' own connections).
/// </summary>
public sealed class ReplicaShards : IMessageExtractor
{
    public const string TypeName = "replica";

    public static string EntityIdOf(string node, string volume) => node + "/" + volume;

    /// <summary>The node of an entity or shard id, or null for an id that is not <c>NODE/VOLUME</c>.</summary>
    public static string? NodeOf(string id) => id.IndexOf('/') is > 0 and var slash ? id[..slash] : null;

    /// <summary>The volume of an entity or shard id (everything after the node).</summary>
    public static string VolumeOf(string id) => id[(id.IndexOf('/') + 1)..];

    // ShardRegion.StartEntity (ReplicaReconciler) is the region's own: it asks ShardId(entityId, hint) for it.
    public string? EntityId(object message) => (message as ReplicaCommand)?.EntityId;

    public object? EntityMessage(object message) => message;

    // One entity per shard: the shard id is the entity id.
    public string? ShardId(object message) => EntityId(message);

    public string ShardId(string entityId, object? messageHint = null) => entityId;

    /// <summary>Starts this node's shard region of replica entities (each the control end of one local replica).</summary>
    public static IActorRef Start(ActorSystem system, Func<ReplicatedVolumes> service, string nodeName) =>
        ClusterSharding.Get(system).Start(TypeName, entityId => ReplicaEntity.Props(service, nodeName, entityId),
            ClusterShardingSettings.Create(system), new ReplicaShards(), new ReplicaPlacement(system), PoisonPill.Instance);
}
