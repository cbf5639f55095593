using ActorCache.Hosting;
using ActorCache.Replicas;

namespace ActorCache.Tests;

/// <summary>
/// The after-split-brain policies' decisions (which side gives up its data, or none), and the setting that picks one.
/// The former primary (this node) found the split brain; the peer is the younger primary it met.
/// </summary>
public sealed class SplitBrainPolicyTests
{
    private static SplitBrainLoser? Loser(SplitBrainPolicy policy, bool selfPrimary = true, bool peerPrimary = true, long? own = null, long? theirs = null) =>
        SplitBrainVerdict.Decide(policy, "b", selfPrimary, peerPrimary, own, theirs).Loser;

    [Fact]
    public void Disconnect_never_decides()
    {
        foreach (var self in new[] { false, true })
        foreach (var peer in new[] { false, true })
            Assert.Null(Loser(SplitBrainPolicy.Disconnect, self, peer, 1, 2));
    }

    [Fact]
    public void Discard_secondary_decides_only_between_a_primary_and_a_secondary()
    {
        Assert.Equal(SplitBrainLoser.FormerPrimary, Loser(SplitBrainPolicy.DiscardSecondary, selfPrimary: false, peerPrimary: true));
        Assert.Equal(SplitBrainLoser.YoungerPrimary, Loser(SplitBrainPolicy.DiscardSecondary, selfPrimary: true, peerPrimary: false));
        Assert.Null(Loser(SplitBrainPolicy.DiscardSecondary, selfPrimary: true, peerPrimary: true));
        Assert.Null(Loser(SplitBrainPolicy.DiscardSecondary, selfPrimary: false, peerPrimary: false));
        Assert.Contains("both this node and b are primary", SplitBrainVerdict.Decide(SplitBrainPolicy.DiscardSecondary, "b", true, true, null, null).Why);
    }

    [Fact]
    public void Discard_younger_primary_always_discards_the_node_promoted_last()
    {
        foreach (var self in new[] { false, true })
        foreach (var peer in new[] { false, true })
            Assert.Equal(SplitBrainLoser.YoungerPrimary, Loser(SplitBrainPolicy.DiscardYoungerPrimary, self, peer));
    }

    [Fact]
    public void Discard_least_changes_discards_the_side_with_fewer_a_tie_the_younger_primary_and_an_unknown_count_nobody()
    {
        Assert.Equal(SplitBrainLoser.FormerPrimary, Loser(SplitBrainPolicy.DiscardLeastChanges, own: 3, theirs: 4));
        Assert.Equal(SplitBrainLoser.YoungerPrimary, Loser(SplitBrainPolicy.DiscardLeastChanges, own: 4, theirs: 3));
        Assert.Equal(SplitBrainLoser.YoungerPrimary, Loser(SplitBrainPolicy.DiscardLeastChanges, own: 0, theirs: 0));
        Assert.Null(Loser(SplitBrainPolicy.DiscardLeastChanges, own: null, theirs: 3));
        Assert.Null(Loser(SplitBrainPolicy.DiscardLeastChanges, own: 3, theirs: null));
        Assert.Contains("b's log no longer covers", SplitBrainVerdict.Decide(SplitBrainPolicy.DiscardLeastChanges, "b", true, true, 3, null).Why);
        Assert.Contains("this node changed 3 blocks", SplitBrainVerdict.Decide(SplitBrainPolicy.DiscardLeastChanges, "b", true, true, 3, 9).Why);
    }

    [Theory]
    [InlineData(null, SplitBrainPolicy.Disconnect)]
    [InlineData("disconnect", SplitBrainPolicy.Disconnect)]
    [InlineData("discard-secondary", SplitBrainPolicy.DiscardSecondary)]
    [InlineData("discard-younger-primary", SplitBrainPolicy.DiscardYoungerPrimary)]
    [InlineData("discard-least-changes", SplitBrainPolicy.DiscardLeastChanges)]
    public void The_setting_picks_the_policy_and_disconnect_is_the_default(string? value, SplitBrainPolicy expected)
    {
        var settings = NodeSettingsLoader.Load(new ServeFlags(null, "/tmp/ac-settings", [], [], value is null ? [] : [$"actorcache.replication.after-split-brain = {value}"],
            null, null, null, null));
        Assert.Equal(expected, settings.Replication.AfterSplitBrain);
        Assert.Equal(value ?? "disconnect", SplitBrainVerdict.Name(expected));
    }

    [Fact]
    public void An_unknown_policy_is_refused_naming_the_ones_there_are()
    {
        var e = Assert.Throws<SettingsException>(() => NodeSettingsLoader.Load(new ServeFlags(null, "/tmp/ac-settings", [], [],
            ["actorcache.replication.after-split-brain = discard-older-primary"], null, null, null, null)));
        Assert.Contains("discard-secondary or discard-younger-primary or discard-least-changes", e.Message);
    }
}
