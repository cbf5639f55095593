using ActorCache.Replicas;

namespace ActorCache.Tests;

/// <summary>
/// Replica sets are totally ordered, so replicas that see two sets take the same one: two promotions made at once from one
/// set (both epoch e + 1) used to leave two primaries that each ignored the other's set as "not newer".
/// </summary>
public sealed class ReplicaSetTests
{
    private static readonly string[] Nodes = ["a", "b", "c"];

    [Fact]
    public void The_higher_epoch_is_newer_and_of_one_epoch_the_primary_that_sorts_last()
    {
        var base_ = new ReplicaSet(Nodes, "C", "", 4);
        var b = base_ with { Primary = "b", Epoch = 5 };
        var c = base_ with { Primary = "c", Epoch = 5 };
        Assert.True(b.IsNewerThan(base_));
        Assert.False(base_.IsNewerThan(b));
        // Two promotions from the same set: exactly one of them is newer, the same one whichever replica compares.
        Assert.True(c.IsNewerThan(b));
        Assert.False(b.IsNewerThan(c));
        Assert.False(c.IsNewerThan(c with { Protocol = "A" }));
        Assert.Same(c, ReplicaSet.Newest([b, c, base_]));
        Assert.Same(c, ReplicaSet.Newest([c, base_, b]));
        Assert.Null(ReplicaSet.Newest([]));
        var later = b with { Epoch = 6 };
        Assert.Same(later, ReplicaSet.Newest([c, later, b]));
    }
}
