using Akka.Actor;

namespace ActorCache.Cluster;

/// <summary>
/// The way out for a node its seeds never let in. A node killed and started again on its old address can stay out for good
/// while its peers still hold its former run (a race in classic Akka.Remote: they answer, and the answers never arrive);
/// only a new run gets in then. With <c>akka.cluster.shutdown-after-unsuccessful-join-seed-nodes</c> set (off by default,
/// set in the Kubernetes manifest), Akka stops such a node after that long, the node stops as on SIGTERM (volumes flushed
/// and closed), and it exits 1 so that its supervisor starts it again.
/// </summary>
public static class JoinGiveUp
{
    public const string Setting = "akka.cluster.shutdown-after-unsuccessful-join-seed-nodes";

    /// <summary>Why the node stopped, if it gave up joining; null otherwise.</summary>
    public static string? Describe(ActorSystem system)
    {
        if (CoordinatedShutdown.Get(system).ShutdownReason is not CoordinatedShutdown.ClusterJoinUnsuccessfulReason) return null;
        var after = system.Settings.Config.GetString(Setting, "");
        return $"not let into the cluster within {after} ({Setting}), so it stopped for its supervisor to start it again: a new run " +
               "gets in where a stuck one may not (a node started again within seconds of a crash, on its old address, can miss its seeds' " +
               "answers for good). If it keeps happening, check --seed and that the seeds' --cluster addresses are reachable from here";
    }
}
