using ActorCache.Hosting;
using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cluster;

/// <summary>
/// Makes a node that formed a cluster of its own beside its seeds' cluster give way. The first seed in a node's list joins
/// itself when no other seed answers within <c>akka.cluster.seed-node-timeout</c>; a node restarted at once on its old address
/// can miss the others' answers that way (a race with Akka.Remote's cleanup of its old run), and Akka never merges two
/// clusters. Its replicated volumes then neither serve (their primaries are not confirmed apart from their peers) nor follow.
/// So while this run of the node formed its cluster (<see cref="ClusterOrigin"/>), it asks each other seed every 5 s which
/// members its cluster has; a seed in a larger cluster without this node (or one as large, whose node asked has been Up longer
/// than this one) makes it leave and stop as on SIGTERM and exit 1 saying why, so that its supervisor's restart joins the
/// seeds' cluster.
/// </summary>
public sealed class SeparateClusterGuard(NodeSettings settings, ActorSystem system, ClusterOrigin origin, ILogger<SeparateClusterGuard> logger)
    : IHostedService, IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>Why this node left its cluster, or null: the node's exit says it (exit 1).</summary>
    public string? Conflict { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (settings.Discovery == ClusterDiscovery.Seeds && settings.SeedNodes.Count > 0) _ = WatchAsync();
        return Task.CompletedTask;
    }

    private async Task WatchAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Interval, _stopping.Token);
                if (await CheckAsync()) return;
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogDebug(e, "asking the seeds which cluster they are in failed");
            }
        }
    }

    /// <summary>True when a seed is in a cluster that this node's must give way to: this node is leaving.</summary>
    private async Task<bool> CheckAsync()
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        if (!origin.FormedItsCluster) return false;
        var ours = state.Members.Where(ClusterMembers.IsIn).ToList();
        var members = ours.Select(m => m.Address.ToString()).ToHashSet(StringComparer.Ordinal);
        foreach (var seed in settings.SeedNodes.Where(s => !members.Contains(s)))
        {
            if (!ActorPath.TryParseAddress(seed, out var address)) continue;
            NodeInfo info;
            try
            {
                info = await ClusterNodeActor.AskAsync(system, address, ClusterMembers.AskTimeout, _stopping.Token);
            }
            catch (Exception e) when (e is not OperationCanceledException || !_stopping.IsCancellationRequested)
            {
                continue; // not running, not let through yet, or an older node: asked again at the next round
            }
            if (info.Members is not { Length: > 0 } theirs || theirs.Contains(ClusterMembers.Describe(cluster.SelfUniqueAddress))) continue;
            // The smaller cluster gives way; of two as large, the younger: the one whose node asked was made Up later (two nodes
            // restarted one after the other each alone, say, where the resolver downed the other's old run meanwhile).
            if (theirs.Length < ours.Count ||
                (theirs.Length == ours.Count && !(info.UpSince is { } since && origin.UpSince is { } mine && since < mine))) continue;
            Conflict = $"this node formed a cluster of its own ({ours.Count} member{(ours.Count == 1 ? "" : "s")}) because its seeds did not let it in within " +
                       $"akka.cluster.seed-node-timeout, but seed {seed} (node {info.Name}) is in a cluster of {theirs.Length}{(theirs.Length == ours.Count ? ", Up longer," : "")} that does not have it; " +
                       "Akka never merges two clusters, so this node left its own and stopped: started again (as a supervisor does), it joins theirs";
            logger.LogError("{Conflict}", Conflict);
            ClusterStopBridge.LeaveAndStop(system);
            return true;
        }
        return false;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping.Cancel();
        return Task.CompletedTask;
    }

    public void Dispose() => _stopping.Dispose();
}
