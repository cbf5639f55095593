namespace ActorCache.Replicas;

/// <summary>
/// Where a replicated volume lives (DESIGN §4): its nodes, which one is primary, the protocol, and the
/// promotion epoch. Every replica keeps its own copy in its node's registry (as DRBD keeps its
/// metadata on each node), so the cluster's view can be rebuilt from whichever replicas are up: a
/// replica that meets a copy with a higher epoch adopts it (a promotion happened while it was away).
/// </summary>
/// <param name="Nodes">The replicas' node names; the first is the primary the volume was created with.</param>
/// <param name="Protocol">"A", "B" or "C".</param>
/// <param name="Primary">The node that serves the volume read-write.</param>
/// <param name="Epoch">Raised by every promotion; the copy with the highest epoch is the current one.</param>
/// <param name="InSync">
/// Set by a clean demotion (<c>volume demote</c>, the hand-off of <c>cluster leave</c>): the nodes that held exactly
/// the demoted primary's data (it among them), every batch durable and nothing out of sync. With no primary nothing
/// changes them, so the next primary promoted from among them resyncs none of the others (DRBD's generation UUIDs
/// say the same of two nodes whose current UUIDs match); everyone else is resynced in full. Null in every other set.
/// </param>
/// <param name="Resolution">Set by a split-brain policy that kept the former primary's data: the node that gives up its own (see <see cref="SplitBrainResolution"/>).</param>
/// <param name="Terms">
/// Who was primary from which epoch, oldest first (the last <see cref="MaxTerms"/>): what DRBD's history UUIDs tell. A node that meets a
/// newer set checks its marks of unshared writes against every node primary since its own set, not only the newest primary: a node
/// promoted and demoted again while this one was away wrote too. Null in sets recorded before it was kept.
/// </param>
public sealed record ReplicaSet(string[] Nodes, string Protocol, string Primary, long Epoch, string[]? InSync = null, SplitBrainResolution? Resolution = null,
    PrimaryTerm[]? Terms = null)
{
    public const int MaxTerms = 32;

    /// <summary>A new set with <paramref name="node"/> primary from <paramref name="epoch"/> (a creation, a promotion, a split brain kept), its term recorded.</summary>
    public ReplicaSet WithPrimary(string node, long epoch) => this with
    {
        Primary = node,
        Epoch = epoch,
        Terms = [.. (Terms ?? []).TakeLast(MaxTerms - 1), new PrimaryTerm(epoch, node)],
    };

    /// <summary>
    /// The nodes that were primary in a term newer than <paramref name="current"/> (one that began after its epoch, or at its epoch
    /// with another primary: a promotion made at once with it, see <see cref="IsNewerThan"/>), or null when this set's history does not
    /// reach back that far (too old, or recorded without one): then who wrote since is unknown. A history holds one term per epoch
    /// at most, so one that starts at or before the current epoch holds every term after it.
    /// </summary>
    public IReadOnlyList<string>? PrimariesSince(ReplicaSet current) =>
        Terms is { Length: > 0 } terms && terms[0].Epoch <= current.Epoch
            ? [.. terms.Where(t => t.Epoch > current.Epoch || t.Epoch == current.Epoch && t.Node != current.Primary).Select(t => t.Node).Distinct()]
            : null;

    /// <summary>
    /// Whether this node, holding <paramref name="current"/>, would lose acknowledged writes by adopting this newer set: it has a mark of
    /// unshared writes (<paramref name="hasUnshared"/>) for a node that was primary since <paramref name="current"/>, or, where the
    /// history does not say who was, for any node. Returns that node, or null when adopting loses nothing.
    /// </summary>
    public string? SplitBrainPeer(ReplicaSet current, string self, Func<string, bool> hasUnshared)
    {
        var since = PrimariesSince(current) ?? Nodes;
        return since.Append(Primary).Where(n => n.Length > 0 && n != self).Distinct().FirstOrDefault(hasUnshared);
    }

    public const string Protocols = "A, B or C";

    public bool IsPrimary(string node) => Primary == node;

    // A method, not a property: Akka's JSON serializer would try to fill a get-only collection property on the receiving side.
    public IEnumerable<string> Secondaries() => Nodes.Where(n => n != Primary);

    public static bool TryParseProtocol(string? text, out string protocol, out string error)
    {
        protocol = (text ?? "C").Trim().ToUpperInvariant();
        error = "";
        if (protocol is "A" or "B" or "C") return true;
        error = $"unknown replication protocol '{text}'; use {Protocols}";
        return false;
    }

    /// <summary>The node list a user gives (<c>a,b,c</c>): 2 or 3 distinct names, or the reason it is not one.</summary>
    public static bool TryParseNodes(string? text, out string[] nodes, out string error)
    {
        nodes = [.. (text ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)];
        error = "";
        if (nodes.Length < 2) error = "--replicas needs at least two node names, the primary first (e.g. a,b or a,b,c)";
        else if (nodes.Length > 3) error = $"--replicas names {nodes.Length} nodes; a volume has at most three replicas";
        else if (nodes.Distinct(StringComparer.Ordinal).Count() != nodes.Length) error = $"--replicas names a node twice: {string.Join(",", nodes)}";
        return error.Length == 0;
    }

    /// <summary>The peers a node promoted right after this set holds identical data with (see <see cref="InSync"/>); empty when none.</summary>
    public IReadOnlyList<string> IdenticalPeersOf(string node) =>
        Primary.Length == 0 && InSync is { } inSync && inSync.Contains(node) ? [.. inSync.Where(n => n != node)] : [];

    /// <summary>
    /// Sets are totally ordered, so every replica that sees two of them takes the same one: the higher epoch wins, and of two sets
    /// of one epoch (two promotions made at once from the same set, each on its own node) the one whose primary's name sorts last.
    /// Without the tie-break each of two such primaries ignored the other's set for ever, and both served.
    /// </summary>
    public bool IsNewerThan(ReplicaSet other) => Epoch != other.Epoch ? Epoch > other.Epoch : string.CompareOrdinal(Primary, other.Primary) > 0;

    /// <summary>The newest of <paramref name="sets"/> by <see cref="IsNewerThan"/>, or null when there are none.</summary>
    public static ReplicaSet? Newest(IEnumerable<ReplicaSet> sets) => sets.Aggregate((ReplicaSet?)null, (newest, s) => newest is null || s.IsNewerThan(newest) ? s : newest);

    public override string ToString() => $"{string.Join(",", Nodes)} (primary {Primary}, protocol {Protocol}, epoch {Epoch})";
}

/// <summary>One term of a primary: <paramref name="Node"/> became primary at <paramref name="Epoch"/>.</summary>
public sealed record PrimaryTerm(long Epoch, string Node);
