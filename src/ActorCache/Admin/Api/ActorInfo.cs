namespace ActorCache.Admin.Api;

/// <summary>
/// One actor of the node's hierarchy as <c>GET /api/actors</c> and <c>actorcache actors --json</c> show it, with
/// its children. The field names are a promise to scripts (documented in the README): fields may be added,
/// never renamed or removed.
/// </summary>
public sealed record ActorInfo
{
    /// <summary>The actor's path in the node's actor system, <c>/user/volume-vol0/flusher-vol0-1</c>.</summary>
    public required string Path { get; init; }
    /// <summary>The actor's class (its Props' type), full name; null when Akka does not say.</summary>
    public required string? Type { get; init; }
    /// <summary>Messages queued in its mailbox now; null where Akka exposes no mailbox (an actor not started yet).</summary>
    public required int? Mailbox { get; init; }
    /// <summary>How many children it has, also when <see cref="Children"/> leaves them out (below the depth asked).</summary>
    public required int ChildCount { get; init; }
    /// <summary>Its children, by name; empty below the depth asked.</summary>
    public required IReadOnlyList<ActorInfo> Children { get; init; }
}
