using ActorCache.Hosting;
using Akka;
using Akka.Actor;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cluster;

/// <summary>
/// Makes a node that leaves the cluster (<c>cluster leave</c>), or is downed, stop the way SIGTERM stops it.
/// Akka runs its coordinated shutdown then, which would stop the volume actors under the NBD front; its
/// first phase here stops the host instead (NBD front, then every volume flushed and closed) and waits
/// for that before Akka goes on to leave and terminate. On SIGTERM the host has stopped the storage by
/// the time Akka's shutdown runs, so the phase finds it done. Registered before the storage service, so
/// it is stopped (and says so) right after it.
/// </summary>
public sealed class ClusterStopBridge(ActorSystem system, IHostApplicationLifetime lifetime, NodeSettings settings, JoinGiveUp giveUp,
    ILogger<ClusterStopBridge> logger)
    : IHostedService
{
    /// <summary>The phase's timeout: the NBD grace, every volume's close and some room.</summary>
    public static TimeSpan PhaseTimeout(NodeSettings settings) => settings.StopGrace + TimeSpan.FromSeconds(60);

    private readonly TaskCompletionSource _storageStopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var shutdown = CoordinatedShutdown.Get(system);
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "actorcache-stop-storage", async () =>
        {
            giveUp.Record(system, shutdown.ShutdownReason);
            if (shutdown.ShutdownReason is not CoordinatedShutdown.ClrExitReason && !_storageStopped.Task.IsCompleted)
                logger.LogWarning("this node is leaving the cluster ({Reason}): stopping it as on SIGTERM, every volume flushed and closed",
                    Describe(shutdown.ShutdownReason));
            lifetime.StopApplication();
            try
            {
                await _storageStopped.Task.WaitAsync(PhaseTimeout(settings) - TimeSpan.FromSeconds(1));
            }
            catch (TimeoutException)
            {
                logger.LogError("the storage did not stop within {Seconds} s; the actor system stops anyway", PhaseTimeout(settings).TotalSeconds);
            }
            return Done.Instance;
        });
        return Task.CompletedTask;
    }

    /// <summary>
    /// Makes this node leave its cluster and stop as on SIGTERM (the guards' way out): through Akka's coordinated shutdown, whose
    /// first phase stops the host here, then leaves and waits for the exit a bounded while. A plain leave of a node let in while a
    /// member is unreachable (WeaklyUp) waits for the cluster to converge, which may be never.
    /// </summary>
    public static void LeaveAndStop(ActorSystem system) =>
        _ = CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClusterLeavingReason.Instance);

    private static string Describe(CoordinatedShutdown.Reason? reason) => reason switch
    {
        CoordinatedShutdown.ClusterLeavingReason => "it was asked to leave",
        CoordinatedShutdown.ClusterDowningReason => "it was marked down",
        CoordinatedShutdown.ClusterJoinUnsuccessfulReason => "it could not join",
        null => "unknown reason",
        _ => reason.GetType().Name,
    };

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _storageStopped.TrySetResult();
        return Task.CompletedTask;
    }
}
