using ActorCache.Replicas;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using Xunit;

namespace ActorCache.Tests;

/// <summary>
/// The replicas' sharding: entity and shard ids (<c>NODE/VOLUME</c>), the placement that puts a replica's shard on its
/// node's region only, and an entity that refuses a message meant for an earlier run of its node (a shard region
/// holds messages while a shard has no home; one must never reach the node's next run and act there).
/// </summary>
public sealed class ReplicaShardingTests() : TestKit("""
    akka.actor.provider = cluster
    akka.remote.dot-netty.tcp.hostname = 127.0.0.1
    akka.remote.dot-netty.tcp.port = 0
    """)
{
    [Fact]
    public void A_replica_command_is_routed_to_the_entity_and_shard_of_its_volume_on_its_node()
    {
        var extractor = new ReplicaShards();
        var command = new ReplicaCommand("b", 7, new GetPeerStatus("vol-1"));
        Assert.Equal("b/vol-1", extractor.EntityId(command));
        Assert.Equal("b/vol-1", extractor.ShardId(command));
        Assert.Equal("b/vol-1", extractor.ShardId("b/vol-1"));
        Assert.Same(command, extractor.EntityMessage(command));
        Assert.Null(extractor.EntityId("something else"));
        Assert.Equal("b", ReplicaShards.NodeOf("b/vol-1"));
        Assert.Equal("vol-1", ReplicaShards.VolumeOf("b/vol-1"));
        Assert.Null(ReplicaShards.NodeOf("no-slash"));
    }

    [Fact]
    public void A_replica_shard_is_placed_on_the_region_of_its_node_and_nowhere_else()
    {
        var a = CreateTestProbe().Ref;
        var b = CreateTestProbe().Ref;
        var c = CreateTestProbe().Ref;
        var members = new Dictionary<IActorRef, (string, bool)> { [a] = ("a", true), [b] = ("b", true), [c] = ("c", true) };
        Assert.Same(b, ReplicaPlacement.HomeOf("b/r", [a, b, c], r => members[r]));
        Assert.Same(c, ReplicaPlacement.HomeOf("c/r", [a, b, c], r => members[r]));
        // b has no region (away, leaving): no home, rather than a wrong one.
        Assert.Null(ReplicaPlacement.HomeOf("b/r", [a, c], r => members[r]));
        Assert.Null(ReplicaPlacement.HomeOf("zz/r", [a, b, c], r => members[r]));
        Assert.Null(ReplicaPlacement.HomeOf("malformed", [a, b, c], r => members[r]));
    }

    [Fact]
    public void Of_two_runs_of_a_node_the_reachable_one_gets_its_shard()
    {
        var old = CreateTestProbe().Ref;
        var restarted = CreateTestProbe().Ref;
        var unknown = CreateTestProbe().Ref;
        var members = new Dictionary<IActorRef, (string, bool)?> { [old] = ("a", false), [restarted] = ("a", true), [unknown] = null };
        Assert.Same(restarted, ReplicaPlacement.HomeOf("a/r", [old, unknown, restarted], r => members[r]));
        Assert.Same(old, ReplicaPlacement.HomeOf("a/r", [old, unknown], r => members[r]));
    }

    [Fact]
    public async Task The_placement_answers_not_now_later_for_a_node_without_a_region()
    {
        Assert.True(ReplicaPlacement.DefaultNotNowDelay > TimeSpan.Zero); // a zero delay would complete at once
        var placement = new ReplicaPlacement(Sys, notNowDelay: TimeSpan.FromSeconds(2)); // not done before the test looks, on a loaded machine too
        var region = CreateTestProbe().Ref;
        var regions = System.Collections.Immutable.ImmutableDictionary<IActorRef, System.Collections.Immutable.IImmutableList<string>>.Empty
            .Add(region, System.Collections.Immutable.ImmutableList<string>.Empty);
        // The coordinator takes an answer that is complete at once as a region: "not now" must come later, and be null.
        var notNow = placement.AllocateShard(region, "nobody/r", regions);
        Assert.False(notNow.IsCompleted);
        Assert.Null(await notNow);
        Assert.Empty(await placement.Rebalance(regions, System.Collections.Immutable.ImmutableHashSet<string>.Empty));
    }

    [Fact]
    public void An_entity_refuses_a_message_meant_for_an_earlier_run_of_its_node_and_never_touches_the_replica()
    {
        var (entity, touched) = EntityOfA();
        var self = Akka.Cluster.Cluster.Get(Sys).SelfUniqueAddress.Uid;

        entity.Tell(new ReplicaCommand("a", self + 1, new PromoteReplica("r", Force: false)), TestActor);
        var refused = ExpectMsg<ReplicaRefused>();
        Assert.Equal("r", refused.Name);
        Assert.Contains("earlier run of node a", refused.Reason);

        entity.Tell(new ReplicaCommand("b", self, new GetPeerStatus("r")), TestActor);
        ExpectMsg<ReplicaRefused>();
        Assert.False(touched());
    }

    [Fact]
    public void A_command_expires_only_once_its_asker_gave_up_longer_ago_than_clocks_may_disagree()
    {
        var now = DateTimeOffset.UtcNow;
        var command = new ReplicaCommand("a", 1, new GetPeerStatus("r")) { DeadlineUnixMs = now.ToUnixTimeMilliseconds() };
        Assert.False(command.Expired(now));
        Assert.False(command.Expired(now + ReplicaCommand.ClockAllowance));
        Assert.True(command.Expired(now + ReplicaCommand.ClockAllowance + TimeSpan.FromMilliseconds(1)));
        Assert.False((command with { DeadlineUnixMs = 0 }).Expired(now + TimeSpan.FromDays(1)));
    }

    [Fact]
    public void An_entity_refuses_a_command_its_asker_stopped_waiting_for_on_the_same_run()
    {
        var (entity, touched) = EntityOfA();
        var self = Akka.Cluster.Cluster.Get(Sys).SelfUniqueAddress.Uid;
        // A promotion held by a shard region for a minute: its asker gave up (and may have promoted another node).
        var late = DateTimeOffset.UtcNow - TimeSpan.FromMinutes(1);
        entity.Tell(new ReplicaCommand("a", self, new PromoteReplica("r", Force: false)) { DeadlineUnixMs = late.ToUnixTimeMilliseconds() }, TestActor);
        Assert.Contains("after its asker stopped waiting", ExpectMsg<ReplicaRefused>().Reason);
        Assert.False(touched());

        // In time, it reaches the replica (here the service throws, and the asker hears why).
        entity.Tell(new ReplicaCommand("a", self, new GetPeerStatus("r")) { DeadlineUnixMs = DateTimeOffset.UtcNow.AddSeconds(5).ToUnixTimeMilliseconds() }, TestActor);
        Assert.Contains("must not be touched", ExpectMsg<ReplicaRefused>().Reason);
        Assert.True(touched());
    }

    /// <summary>Node a's entity of volume r over a service that throws when reached, and whether it was.</summary>
    private (IActorRef Entity, Func<bool> Touched) EntityOfA()
    {
        var touched = false;
        var entity = Sys.ActorOf(ReplicaEntity.Props(() =>
        {
            touched = true;
            throw new InvalidOperationException("the replica must not be touched");
        }, "a", "a/r"));
        return (entity, () => Volatile.Read(ref touched));
    }
}
