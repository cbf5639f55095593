using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster;

namespace ActorCache.Cluster;

/// <summary>
/// Where this run of the node's cluster came from. <see cref="FormedItsCluster"/>: it joined itself, so no member was older
/// than it when it was made Up (a node let into a cluster is younger than the members Up then, and one let in while a member
/// is unreachable is WeaklyUp first). Such a cluster says nothing about nodes that are not in it: a node whose seeds did not
/// let it in (a race lost in Akka.Remote, a seed list naming only itself) joins itself after its seed timeout, while the
/// others may run on in their cluster. <see cref="HasSeen"/>: the nodes that have been members of it in this run; one that
/// was and is gone was downed or left (the split-brain resolver stops a side it downs), so its absence says something again.
/// Created with the host's services, before the node is Up.
/// </summary>
public sealed class ClusterOrigin
{
    private readonly Akka.Cluster.Cluster _cluster;
    private readonly ConcurrentDictionary<string, bool> _seen = new(StringComparer.Ordinal);
    private volatile bool _formed, _decided;
    private long _upSince; // Unix milliseconds when this node was made Up; 0 before

    public ClusterOrigin(ActorSystem system)
    {
        var cluster = _cluster = Akka.Cluster.Cluster.Get(system);
        // Run once this node is Up (at once if it is already): members made Up later are younger and do not count.
        cluster.RegisterOnMemberUp(() =>
        {
            var self = cluster.SelfMember;
            _formed = cluster.State.Members.Where(m => !m.UniqueAddress.Equals(self.UniqueAddress) && m.Status != MemberStatus.Joining)
                .All(self.IsOlderThan);
            Interlocked.Exchange(ref _upSince, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            _decided = true;
        });
        system.ActorOf(Props.Create(() => new SeenMembers(_seen)), "cluster-origin");
    }

    /// <summary>True once this node is Up in a cluster it formed itself in this run.</summary>
    public bool FormedItsCluster => _formed;

    /// <summary>
    /// Whether <see cref="FormedItsCluster"/> is known: the callback runs a moment after the node is Up, and a decision that
    /// reads it (a restarted primary's confirmation) waits for it rather than take "not yet" for "no". A node that is WeaklyUp
    /// was let into a cluster (it did not form it) and may stay so while a member is unreachable.
    /// </summary>
    public bool Decided => _decided || _cluster.SelfMember.Status == MemberStatus.WeaklyUp;

    /// <summary>When this node was made Up in its cluster (Unix milliseconds), or null before.</summary>
    public long? UpSince => Interlocked.Read(ref _upSince) is var at and > 0 ? at : null;

    /// <summary>Whether a node named <paramref name="node"/> has been a member of this node's cluster (WeaklyUp or Up) in this run.</summary>
    public bool HasSeen(string node) => _seen.ContainsKey(node);

    /// <summary>Records the name of every member that is WeaklyUp or Up in this node's cluster, from its start on.</summary>
    private sealed class SeenMembers : ReceiveActor
    {
        public SeenMembers(ConcurrentDictionary<string, bool> seen)
        {
            Receive<ClusterEvent.CurrentClusterState>(state =>
            {
                foreach (var member in state.Members.Where(m => m.Status is MemberStatus.WeaklyUp or MemberStatus.Up)) seen[ClusterMembers.NameOf(member)] = true;
            });
            Receive<ClusterEvent.MemberUp>(up => seen[ClusterMembers.NameOf(up.Member)] = true);
            Receive<ClusterEvent.MemberWeaklyUp>(up => seen[ClusterMembers.NameOf(up.Member)] = true);
        }

        protected override void PreStart() =>
            Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot,
                typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberWeaklyUp));

        protected override void PostStop() => Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);
    }
}
