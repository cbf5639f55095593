namespace ActorCache.Replicas;

/// <summary>
/// What a node does when it finds a split brain (<c>actorcache.replication.after-split-brain</c>), DRBD's after-sb
/// policies. The node that finds it is always the former primary: it holds writes the newer primary lacks and meets
/// that primary's newer replica set. Whichever side gives up its data keeps it as snapshot <c>VOL@split-brain-TIME</c>
/// on its node first, so no acknowledged write is thrown away without a copy.
/// </summary>
public enum SplitBrainPolicy
{
    /// <summary>Report it and refuse to connect; an operator resolves it (<c>volume discard-my-data</c>). The default, as in DRBD.</summary>
    Disconnect,

    /// <summary>The side that is not primary when they meet gives up its data; with both primary nothing is decided (DRBD's after-sb-1pri).</summary>
    DiscardSecondary,

    /// <summary>The side promoted last (the newer replica set's primary) gives up its data.</summary>
    DiscardYoungerPrimary,

    /// <summary>The side that changed fewer blocks since they last agreed gives up its data; a tie discards the younger primary.</summary>
    DiscardLeastChanges,
}

/// <summary>Which side a policy gives up: the former primary that found the split brain, or the younger primary it met.</summary>
public enum SplitBrainLoser
{
    FormerPrimary,
    YoungerPrimary,
}

/// <summary>A policy's decision: the side that gives up its data, or null (stay disconnected), and why in words.</summary>
public sealed record SplitBrainVerdict(SplitBrainLoser? Loser, string Why)
{
    public static string Name(SplitBrainPolicy policy) => policy switch
    {
        SplitBrainPolicy.DiscardSecondary => "discard-secondary",
        SplitBrainPolicy.DiscardYoungerPrimary => "discard-younger-primary",
        SplitBrainPolicy.DiscardLeastChanges => "discard-least-changes",
        _ => "disconnect",
    };

    /// <summary>
    /// The decision of <paramref name="policy"/> between this node (the former primary, <paramref name="selfPrimary"/> when
    /// it serves the volume as primary now) and <paramref name="peer"/> (the younger primary, <paramref name="peerPrimary"/>
    /// when it does), given the blocks each changed since they last agreed (null: its log cannot tell).
    /// </summary>
    public static SplitBrainVerdict Decide(SplitBrainPolicy policy, string peer, bool selfPrimary, bool peerPrimary, long? selfChanges, long? peerChanges) =>
        policy switch
        {
            SplitBrainPolicy.DiscardSecondary => (selfPrimary, peerPrimary) switch
            {
                (false, true) => new(SplitBrainLoser.FormerPrimary, $"this node is secondary and {peer} is primary"),
                (true, false) => new(SplitBrainLoser.YoungerPrimary, $"{peer} is secondary and this node is primary"),
                (true, true) => new(null, $"both this node and {peer} are primary; discard-secondary decides only between a primary and a secondary"),
                _ => new(null, $"neither this node nor {peer} is primary; discard-secondary decides only between a primary and a secondary"),
            },
            SplitBrainPolicy.DiscardYoungerPrimary => new(SplitBrainLoser.YoungerPrimary, $"{peer} was promoted after this node"),
            SplitBrainPolicy.DiscardLeastChanges => (selfChanges, peerChanges) switch
            {
                ({ } own, { } theirs) when own < theirs => new(SplitBrainLoser.FormerPrimary, $"this node changed {own} blocks since they last agreed, {peer} {theirs}"),
                ({ } own, { } theirs) when own > theirs => new(SplitBrainLoser.YoungerPrimary, $"{peer} changed {theirs} blocks since they last agreed, this node {own}"),
                ({ } own, { }) => new(SplitBrainLoser.YoungerPrimary, $"both changed {own} blocks since they last agreed; a tie discards the younger primary, {peer}"),
                (null, _) => new(null, "this node's log no longer covers the point where the two last agreed, so the changes cannot be counted"),
                _ => new(null, $"{peer}'s log no longer covers the point where the two last agreed, so its changes cannot be counted"),
            },
            _ => new(null, "after-split-brain = disconnect: an operator decides ('actorcache volume discard-my-data' on the side to give up)"),
        };
}

/// <summary>
/// Recorded in a replica set made by a split-brain policy: <paramref name="Winner"/> became primary at <paramref name="Epoch"/>
/// over <paramref name="Loser"/>, which gives up its data (kept as a snapshot) when it adopts a set of that epoch or later while its
/// own is older. A node that has seen that epoch never acts on it again, however far later sets carry it.
/// </summary>
public sealed record SplitBrainResolution(string Winner, string Loser, long Epoch, string Policy);
