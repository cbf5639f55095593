using ActorCache.Admin.Api;
using ActorCache.Replicas;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cluster;

/// <summary>
/// The cluster's shard regions as this node sees them, for <c>actorcache sharding show</c>: each member's region of replica
/// entities asked for its shards and entities (<see cref="GetShardRegionState"/>, all at once, 2 s at most each), and where the
/// shard coordinator runs (the oldest Up member, where its singleton lives).
/// </summary>
public sealed class ShardingView(ActorSystem system, ILogger<ShardingView> logger)
{
    public async Task<IReadOnlyList<ShardRegionInfo>> ReadAsync(CancellationToken cancellationToken)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        // A downed member is gone for sharding (its run may share its address with the node's next run: not asked twice).
        var members = state.Members.Where(m => m.Status is not (MemberStatus.Removed or MemberStatus.Joining or MemberStatus.Down)).ToList();
        var oldest = members.Where(m => m.Status is MemberStatus.Up or MemberStatus.Leaving or MemberStatus.Exiting)
            .Aggregate((Member?)null, (a, b) => a is null || b.IsOlderThan(a) ? b : a);
        var regions = await Task.WhenAll(members.Select(async m =>
        {
            var self = m.UniqueAddress.Equals(cluster.SelfUniqueAddress);
            var reachable = !state.Unreachable.Contains(m);
            var (shards, problem) = reachable ? await ShardsOfAsync(m.Address, self, cancellationToken) : ([], "unreachable");
            return new ShardRegionInfo
            {
                Node = ClusterMembers.NameOf(m),
                Address = m.Address.ToString(),
                TypeName = ReplicaShards.TypeName,
                Reachable = reachable,
                // The singleton runs on the oldest member; an unreachable one runs nothing anyone can use until it is downed.
                Coordinator = m.Equals(oldest) && reachable,
                Self = self,
                Shards = shards,
                Problem = problem,
            };
        }));
        return regions;
    }

    private async Task<(IReadOnlyList<ShardInfo> Shards, string? Problem)> ShardsOfAsync(Address address, bool self, CancellationToken ct)
    {
        try
        {
            var answer = self
                ? await ClusterSharding.Get(system).ShardRegion(ReplicaShards.TypeName).Ask<CurrentShardRegionState>(GetShardRegionState.Instance, ClusterMembers.AskTimeout, ct)
                : await system.ActorSelection(new RootActorPath(address) / "system" / "sharding" / ReplicaShards.TypeName)
                    .Ask<CurrentShardRegionState>(GetShardRegionState.Instance, ClusterMembers.AskTimeout, ct);
            return ([.. answer.Shards.OrderBy(s => s.ShardId, StringComparer.Ordinal)
                .Select(s => new ShardInfo { Shard = s.ShardId, Entities = [.. s.EntityIds.Order(StringComparer.Ordinal)] })], null);
        }
        catch (AskTimeoutException)
        {
            return ([], $"its shard region did not answer within {ClusterMembers.AskTimeout.TotalSeconds:0} s");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogDebug(e, "asking {Address} for its shards failed", address);
            return ([], e.Message);
        }
    }
}
