using Akka.Actor;

namespace ActorCache.Cluster;

/// <summary>
/// The way out for a node its seeds never let in. A node killed and started again on its old address can stay out for good
/// while its peers still hold its former run (a race in classic Akka.Remote: they answer, and the answers never arrive);
/// only a new run gets in then. With <c>akka.cluster.shutdown-after-unsuccessful-join-seed-nodes</c> set (off by default,
/// set in the Kubernetes manifest), Akka stops such a node after that long, the node stops as on SIGTERM (volumes flushed
/// and closed, NBD clients cut), and it exits 1 so that its supervisor starts it again. Akka's clock starts when the node
/// asks its seeds: at the actor system's start with seeds, and once bootstrap has found a cluster to join with discovery (a
/// cold start that forms a new cluster is never cut short). <see cref="ClusterStopBridge"/> records it when the stop comes;
/// a service of its own, with nothing to start, so that a start it cut short can still be told from other failed starts.
/// </summary>
public sealed class JoinGiveUp
{
    public const string Setting = "akka.cluster.shutdown-after-unsuccessful-join-seed-nodes";

    private volatile string? _reason;

    /// <summary>The give-up time as configured ("120s"), or null when it is off.</summary>
    public static string? After(ActorSystem system) => system.Settings.Config.GetString(Setting, "off") is var after and not ("" or "off") ? after : null;

    /// <summary>Why the node stopped, if it gave up joining; null otherwise.</summary>
    public string? Reason => _reason;

    /// <summary>Records the give-up if <paramref name="reason"/> (the coordinated shutdown's) is one.</summary>
    public void Record(ActorSystem system, CoordinatedShutdown.Reason? reason)
    {
        if (reason is not CoordinatedShutdown.ClusterJoinUnsuccessfulReason) return;
        _reason = $"not let into the cluster within {After(system)} ({Setting}), so it stopped for its supervisor to start it again: a new run " +
                  "gets in where a stuck one may not (a node started again within seconds of a crash, on its old address, can miss its seeds' " +
                  "answers for good). If it keeps happening, check the seeds (--seed, or what discovery found) and that their cluster addresses " +
                  "are reachable from here";
    }
}
