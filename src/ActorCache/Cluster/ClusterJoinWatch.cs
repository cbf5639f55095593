using ActorCache.Hosting;
using Akka.Actor;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cluster;

/// <summary>
/// Once the node serves (started after the storage), records its name in the data directory (first start)
/// and watches that the cluster accepts it: a node its seeds do not let in within
/// <c>actorcache.cluster.join-timeout</c> says so in a warning and in <c>/health</c>, and keeps trying.
/// </summary>
public sealed class ClusterJoinWatch(NodeSettings settings, ClusterMembers members, ActorSystem system, DiscoveryReport discovery, ILogger<ClusterJoinWatch> logger)
    : IHostedService, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private DateTime _startedAt = DateTime.MaxValue;
    private volatile bool _joined;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        NodeIdentity.Record(settings.DataDir, settings.NodeName);
        _startedAt = DateTime.UtcNow;
        var cluster = Akka.Cluster.Cluster.Get(system);
        cluster.RegisterOnMemberUp(() =>
        {
            _joined = true;
            logger.LogInformation("node {Name} is Up in the cluster at {Address}", settings.NodeName, cluster.SelfAddress);
        });
        _ = WarnIfNotJoinedAsync();
        return Task.CompletedTask;
    }

    private async Task WarnIfNotJoinedAsync()
    {
        try
        {
            await Task.Delay(settings.JoinTimeout, _stopping.Token);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        if (Joined) return;
        logger.LogWarning("{Problem}", NotJoinedProblem());
    }

    private bool Joined => _joined || members.IsJoined;

    /// <summary>
    /// What /health says about the cluster: nothing once the node is Up in it. Before, it is not ready either: a
    /// replicated volume's peers, its coordinator and promotion all need the cluster (a node still joining, or never
    /// let in, must not take traffic that a load balancer or a rollout reads readiness for). Within the join timeout
    /// it is "joining"; past it, what keeps it out.
    /// </summary>
    public IEnumerable<string> Problems()
    {
        if (Joined) yield break;
        var waited = DateTime.UtcNow - _startedAt;
        yield return waited < settings.JoinTimeout
            ? $"cluster: joining, not Up yet ({Math.Max(0, waited.TotalSeconds):0} s of the {settings.JoinTimeout.TotalSeconds:0} s join timeout)"
            : NotJoinedProblem();
    }

    private string NotJoinedProblem()
    {
        if (settings.Discovery != ClusterDiscovery.Seeds)
        {
            var check = settings.Discovery == ClusterDiscovery.Kubernetes
                ? "check that the Kubernetes API is reachable (KUBERNETES_SERVICE_HOST/PORT) and lets the service account list pods, that the " +
                  "selector matches the pods and each pod names its management port"
                : "check actorcache.cluster.contact-points";
            if (discovery.Problem is { } problem)
                return $"cluster: not joined after {settings.JoinTimeout.TotalSeconds:0} s: {problem}; {Outlook()}";
            var found = discovery.Found is { } f ? $"; last lookup: {f}" : "";
            return $"cluster: not joined after {settings.JoinTimeout.TotalSeconds:0} s: bootstrap found no cluster to join and not enough nodes " +
                   $"to form one ({ClusterBootstrapConfig.Describe(settings)}); {check}, and that the management endpoints " +
                   $"are reachable from here (the node's log says what bootstrap saw){found}; {Outlook()}";
        }
        var seeds = string.Join(", ", settings.SeedNodes.Select(s => s[(s.IndexOf('@') + 1)..]));
        return $"cluster: not joined after {settings.JoinTimeout.TotalSeconds:0} s: no seed node let this node in (seeds {seeds}); " +
               "check --seed, that a node of the cluster runs there and that its --cluster address is reachable from here (a node started " +
               $"again on its old address within seconds of a crash can stay out although its seeds answer: start it again); {Outlook()}";
    }

    /// <summary>What the node does next: keeps trying, or gives up at Akka's deadline for its supervisor (see <see cref="JoinGiveUp"/>).</summary>
    private string Outlook() => JoinGiveUp.After(system) is { } after
        ? $"still trying, and it stops (exit 1) if not let in within {after} of asking its seeds ({JoinGiveUp.Setting})"
        : "still trying";

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping.Cancel();
        return Task.CompletedTask;
    }

    public void Dispose() => _stopping.Dispose();
}
