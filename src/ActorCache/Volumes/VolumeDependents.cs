namespace ActorCache.Volumes;

/// <summary>
/// What depends on a volume and would break if it went away: its snapshots, and the clones made from
/// them. Deleting a volume is refused while anything does, unless forced. None exist yet: snapshots and
/// clones come with the snapshot commands, which answer here.
/// </summary>
public sealed class VolumeDependents
{
    /// <summary>The names of the snapshots and clones that need <paramref name="volume"/>, e.g. "snapshot vol0@before-upgrade".</summary>
    public Task<IReadOnlyList<string>> OfAsync(string volume, CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<string>>([]);
}
