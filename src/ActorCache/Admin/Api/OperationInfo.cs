namespace ActorCache.Admin.Api;

/// <summary>
/// Long work the node does for a request (a mode switch that drains a log), polled at
/// <c>GET /api/operations/ID</c>. <see cref="Done"/> of <see cref="Total"/> bytes when the work can
/// say how far it is (<see cref="Total"/> 0 when it cannot).
/// </summary>
public sealed record OperationInfo
{
    public required string Id { get; init; }
    /// <summary>What kind of work, e.g. <c>volume-mode</c>.</summary>
    public required string Kind { get; init; }
    /// <summary>What it works on, e.g. the volume's name.</summary>
    public required string Target { get; init; }
    /// <summary>One line for people, e.g. "switch vol0 to write-through".</summary>
    public required string Description { get; init; }
    /// <summary><c>running</c>, <c>done</c> or <c>failed</c>.</summary>
    public required string State { get; init; }
    public required long Done { get; init; }
    public required long Total { get; init; }
    /// <summary>Why it failed, or null.</summary>
    public string? Error { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
}
