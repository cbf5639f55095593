using ActorCache.Hosting;
using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cluster;

/// <summary>
/// Refuses a second live node under one name. Replicas, their peers' links and a promotion find a node by its name, so a
/// copied data directory (the name is kept there) or a repeated <c>--node-name</c> would have two nodes take each other's
/// replica data. Once Up (or WeaklyUp: let in while a member is unreachable, and already serving), and every 10 s after, a
/// node asks each older member with its name who it is; if one answers,
/// this node (the younger) leaves the cluster, stops as on SIGTERM (volumes flushed and closed) and exits 1 saying why. An
/// older member that does not answer is a former incarnation (crashed, restarted on another port) and no conflict; one
/// unreachable for now is asked again at the next round.
/// </summary>
public sealed class DuplicateNameGuard(NodeSettings settings, ActorSystem system, ILogger<DuplicateNameGuard> logger) : IHostedService, IDisposable
{
    private static readonly TimeSpan RecheckInterval = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan JoinPoll = TimeSpan.FromMilliseconds(500);
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>Why this node left its cluster, or null: the node's exit says it (exit 1).</summary>
    public string? Conflict { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Not RegisterOnMemberUp: a node let in while a member is unreachable is WeaklyUp, serving and taking links, until the
        // cluster converges again, which may take as long as that member stays unreachable.
        _ = WatchAsync();
        return Task.CompletedTask;
    }

    /// <summary>
    /// Checks as soon as this node is Up or WeaklyUp and every <see cref="RecheckInterval"/> after, until a conflict is found or
    /// the node stops; never faults.
    /// </summary>
    private async Task WatchAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            var joined = Akka.Cluster.Cluster.Get(system).SelfMember.Status is MemberStatus.Up or MemberStatus.WeaklyUp;
            try
            {
                if (joined && await CheckAsync()) return;
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "checking that no other live member is named '{Name}' failed", settings.NodeName);
            }
            try
            {
                await Task.Delay(joined ? RecheckInterval : JoinPoll, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>True when an older live member has this node's name: this node is leaving.</summary>
    private async Task<bool> CheckAsync()
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        var self = state.Members.FirstOrDefault(m => m.UniqueAddress.Equals(cluster.SelfUniqueAddress));
        if (self is null) return false;
        foreach (var other in state.Members)
        {
            if (other.UniqueAddress.Equals(self.UniqueAddress) || ClusterMembers.NameOf(other) != settings.NodeName) continue;
            if (other.Status is not (MemberStatus.Up or MemberStatus.WeaklyUp) || !other.IsOlderThan(self)) continue;
            if (!await AnswersAsync(other)) continue;
            Conflict = $"another live member of the cluster is named '{settings.NodeName}' (at {other.Address}, Up before this node at " +
                       $"{cluster.SelfAddress}); two nodes with one name would take each other's replicas, so this node left the cluster and stopped. " +
                       $"Give each node its own --node-name and its own data directory (the name is kept in {Path.Combine(settings.DataDir, NodeIdentity.FileName)})";
            logger.LogError("{Conflict}", Conflict);
            ClusterStopBridge.LeaveAndStop(system);
            return true;
        }
        return false;
    }

    /// <summary>
    /// Whether <paramref name="member"/> answers under the name checked (its node actor says it). Asked three times while it is
    /// reachable: one busy or slow to associate is not taken for a former incarnation (and the next round asks again).
    /// </summary>
    private async Task<bool> AnswersAsync(Member member)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        // A former run on this node's own address: an ask there would reach this run (Akka asks by address), and no other live
        // process holds the port this one listens on.
        if (member.Address.Equals(cluster.SelfAddress)) return false;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            if (cluster.State.Unreachable.Any(u => u.UniqueAddress.Equals(member.UniqueAddress))) return false;
            try
            {
                return (await ClusterNodeActor.AskAsync(system, member.Address, ClusterMembers.AskTimeout)).Name == settings.NodeName;
            }
            catch (Exception e)
            {
                logger.LogDebug(e, "the member at {Address} did not say who it is", member.Address);
                if (cluster.IsTerminated) return false; // this node is stopping
            }
        }
        return false; // silent: a former incarnation, or asked again at the next round
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping.Cancel();
        return Task.CompletedTask;
    }

    public void Dispose() => _stopping.Dispose();
}
