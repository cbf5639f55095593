using ActorCache.Hosting;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replicas;

/// <summary>
/// Keeps this node's replica sets current: soon after each replicated volume opens, and then every few
/// seconds, it asks the volume's other replicas for theirs and adopts a newer one (a promotion, demotion
/// or protocol switch made while this node was away or cut off). A primary whose volume just opened
/// serves NBD only after the first such round (or once its peers cannot be asked). Each round also starts the sharded entity
/// of each open replica here (<see cref="ReplicaEntity"/>), so a node's entities are there, on it, before anyone asks.
/// </summary>
public sealed class ReplicaReconciler(ReplicatedVolumes replicated, ReplicaRoles roles, NodeSettings settings, ActorSystem system,
    ILogger<ReplicaReconciler> logger) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var region = ClusterSharding.Get(system).ShardRegion(ReplicaShards.TypeName);
            foreach (var volume in roles.OpenVolumes())
            {
                region.Tell(new ShardRegion.StartEntity(ReplicaShards.EntityIdOf(settings.NodeName, volume)), system.IgnoreRef);
                try
                {
                    await replicated.ReconcileAsync(volume, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogDebug("volume {Name}: checking the replica set with its peers failed: {Reason}", volume, e.Message);
                }
            }
            try
            {
                await Task.Delay(Interval, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
