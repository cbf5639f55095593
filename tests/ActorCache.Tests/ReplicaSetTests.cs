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

    [Fact]
    public void A_node_with_unshared_writes_finds_split_brain_with_a_primary_that_came_and_went_while_it_was_away()
    {
        // a is primary at epoch 1 and is cut off from b; a FLUSHes (a mark for b). b is promoted (2), writes, and is demoted cleanly (3,
        // no primary). a then meets set 3: its newest primary is nobody, but b was primary since a's set, and a's writes b lacks would
        // be resynced away without a word.
        var created = new ReplicaSet(["a", "b"], "C", "", 0).WithPrimary("a", 1);
        var promoted = created.WithPrimary("b", 2);
        var demoted = promoted with { Primary = "", Epoch = 3, InSync = ["b"] };
        Assert.Equal(["b"], demoted.PrimariesSince(created));
        Assert.Equal("b", demoted.SplitBrainPeer(created, "a", peer => peer == "b"));
        Assert.Null(demoted.SplitBrainPeer(created, "a", _ => false)); // no mark: nothing of a's to lose
        Assert.Null(demoted.SplitBrainPeer(promoted, "a", peer => peer == "c")); // b was primary before a's own set: a knew it

        // A history that does not reach back to this node's set (too long, or a set recorded before terms were kept): any mark counts.
        var old = new ReplicaSet(["a", "b", "c"], "C", "", 7);
        Assert.Null(old.PrimariesSince(created));
        Assert.Equal("c", old.SplitBrainPeer(created, "a", peer => peer == "c"));
        var many = Enumerable.Range(2, 40).Aggregate(created, (set, epoch) => set.WithPrimary(epoch % 2 == 0 ? "b" : "c", epoch));
        Assert.Equal(ReplicaSet.MaxTerms, many.Terms!.Length);
        Assert.Null(many.PrimariesSince(created));
        Assert.Equal(["b", "c"], many.PrimariesSince(created with { Epoch = 35, Primary = "c" })!.Order());
    }

    [Fact]
    public void Split_brain_is_found_after_two_promotions_at_one_epoch_when_the_winner_is_demoted_before_they_meet()
    {
        // From set (p, 1) a and b are promoted at once: (a, 2) and (b, 2). b's wins the tie; b is demoted cleanly: ("", 3). a, with a
        // mark for b, meets set 3: b's term began at a's own epoch, and must count.
        var start = new ReplicaSet(["a", "b", "p"], "C", "", 0).WithPrimary("p", 1);
        var a = start.WithPrimary("a", 2);
        var b = start.WithPrimary("b", 2);
        var demoted = b with { Primary = "", Epoch = 3 };
        Assert.True(b.IsNewerThan(a));
        Assert.Equal("b", demoted.SplitBrainPeer(a, "a", n => n == "b"));
        Assert.Equal(["b"], demoted.PrimariesSince(a));
    }
}
