using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replicas;

/// <summary>
/// Keeps this node's replica sets current: soon after each replicated volume opens, and then every few
/// seconds, it asks the volume's other replicas for theirs and adopts a newer one (a promotion, demotion
/// or protocol switch made while this node was away or cut off). A primary whose volume just opened
/// serves NBD only after the first such round (or once its peers cannot be asked).
/// </summary>
public sealed class ReplicaReconciler(ReplicatedVolumes replicated, ReplicaRoles roles, ILogger<ReplicaReconciler> logger) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            foreach (var volume in roles.OpenVolumes())
            {
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
