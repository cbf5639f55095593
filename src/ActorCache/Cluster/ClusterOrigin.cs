using Akka.Actor;
using Akka.Cluster;

namespace ActorCache.Cluster;

/// <summary>
/// Whether this run of the node formed the cluster it is in: it joined itself, so no member was older than it when it was
/// made Up (a node let into a cluster is younger than the members Up then, and one let in while a member is unreachable is
/// WeaklyUp first). Such a cluster says nothing about nodes that are not in it: a node whose seeds did not let it in (a race
/// lost in Akka.Remote, a seed list naming only itself) joins itself after its seed timeout, while the others may run on in
/// their cluster. Being the oldest member is not the same: a node that joined becomes the oldest once the older ones are
/// downed or left, and its cluster is still theirs. Created with the host's services, before the node is Up.
/// </summary>
public sealed class ClusterOrigin
{
    private volatile bool _formed;

    public ClusterOrigin(ActorSystem system)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        // Run once this node is Up (at once if it is already): members made Up later are younger and do not count.
        cluster.RegisterOnMemberUp(() =>
        {
            var self = cluster.SelfMember;
            _formed = cluster.State.Members.Where(m => !m.UniqueAddress.Equals(self.UniqueAddress) && m.Status != MemberStatus.Joining)
                .All(self.IsOlderThan);
        });
    }

    /// <summary>True once this node is Up in a cluster it formed itself in this run.</summary>
    public bool FormedItsCluster => _formed;
}
