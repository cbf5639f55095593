using Akka.Actor;

namespace ActorCache.Cluster;

/// <summary>Asks a node for its name and the volumes it serves (sent over remoting to <see cref="ClusterNodeActor.Path"/>).</summary>
public sealed record GetNodeInfo
{
    public static readonly GetNodeInfo Instance = new();
}

/// <summary>
/// A node's answer: its name, the volumes it serves, by name, the members of its cluster that are in it or on their way
/// in or out (<see cref="ClusterMembers.Describe(Akka.Cluster.UniqueAddress)"/>: address and incarnation), and since when it
/// is Up in that cluster (Unix milliseconds). The last two are null from a node before they were sent, or not Up.
/// </summary>
public sealed record NodeInfo(string Name, string[] Volumes, string[]? Members = null, long? UpSince = null);

/// <summary>
/// The actor at a well-known path on every node (<c>/user/cluster-node</c>) that tells other members who
/// this node is and what it serves, so <c>cluster show</c> on any node can list every node's volumes.
/// </summary>
public sealed class ClusterNodeActor : ReceiveActor
{
    public const string Name = "cluster-node";
    public const string Path = "/user/" + Name;

    public ClusterNodeActor(string nodeName, Func<IEnumerable<string>> volumes, Func<long?> upSince)
    {
        Receive<GetNodeInfo>(_ =>
        {
            var state = Akka.Cluster.Cluster.Get(Context.System).State;
            Sender.Tell(new NodeInfo(nodeName, [.. volumes().Order(StringComparer.Ordinal)],
                [.. state.Members.Where(ClusterMembers.IsIn).Select(m => ClusterMembers.Describe(m.UniqueAddress))], upSince()));
        });
    }

    public static Props Props(string nodeName, Func<IEnumerable<string>> volumes, Func<long?> upSince) =>
        Akka.Actor.Props.Create(() => new ClusterNodeActor(nodeName, volumes, upSince));

    /// <summary>Asks the node at <paramref name="address"/> who it is and what it serves; throws when it does not answer within <paramref name="timeout"/>.</summary>
    public static Task<NodeInfo> AskAsync(ActorSystem system, Address address, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        system.ActorSelection(new RootActorPath(address) / "user" / Name).Ask<NodeInfo>(GetNodeInfo.Instance, timeout, cancellationToken);
}
