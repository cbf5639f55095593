using System.Collections.Immutable;
using ActorCache.Cluster;
using Akka.Actor;
using Akka.Cluster.Sharding;

namespace ActorCache.Replicas;

/// <summary>
/// Where the shard coordinator puts a replica's shard (<c>NODE/VOLUME</c>): on the shard region of the member named NODE, and
/// nowhere else. Akka's default strategies balance shards over the regions; a replica's entity answers for the data on its
/// node's disks, so it can only live there. While that node has no region (it is away, or leaving), the shard stays unallocated
/// and the coordinator asks again when a message for it arrives. Never rebalances.
/// </summary>
public sealed class ReplicaPlacement(ActorSystem system, TimeSpan? notNowDelay = null) : IShardAllocationStrategy
{
    // The "not now" answer has to complete later: the coordinator takes a task completed at once as a region, and a null
    // region there would fail it; a null that arrives later is logged (at debug) and the shard is allocated on the next ask.
    // (A test looks at the answer before it completes, so it may give a longer delay.)
    public static readonly TimeSpan DefaultNotNowDelay = TimeSpan.FromMilliseconds(100);
    private readonly TimeSpan _notNowDelay = notNowDelay ?? DefaultNotNowDelay;

    public Task<IActorRef> AllocateShard(IActorRef requester, string shardId, IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        var home = HomeOf(shardId, currentShardAllocations.Keys, region =>
        {
            var address = region.Path.Address.HasLocalScope ? cluster.SelfAddress : region.Path.Address;
            return state.Members.FirstOrDefault(m => m.Address.Equals(address)) is { } member
                ? (ClusterMembers.NameOf(member), !state.Unreachable.Contains(member))
                : null;
        });
        return home is not null ? Task.FromResult(home) : NotNowAsync();
    }

    /// <summary>
    /// The region of the node the shard names, given each region's member (its node name and whether it is reachable; null for
    /// a region of no known member): a reachable one first, as a node's new run sits beside its old one until that is removed.
    /// </summary>
    public static IActorRef? HomeOf(string shardId, IEnumerable<IActorRef> regions, Func<IActorRef, (string Node, bool Reachable)?> memberOf)
    {
        if (ReplicaShards.NodeOf(shardId) is not { } node) return null;
        return regions.Select(r => (Region: r, Member: memberOf(r)))
            .Where(r => r.Member?.Node == node)
            .OrderByDescending(r => r.Member!.Value.Reachable)
            .Select(r => r.Region)
            .FirstOrDefault();
    }

    private async Task<IActorRef> NotNowAsync()
    {
        await Task.Delay(_notNowDelay);
        return null!;
    }

    public Task<IImmutableSet<string>> Rebalance(IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations,
        IImmutableSet<string> rebalanceInProgress) => Task.FromResult<IImmutableSet<string>>(ImmutableHashSet<string>.Empty);
}
