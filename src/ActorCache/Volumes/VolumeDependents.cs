using ActorCache.Snapshots;

namespace ActorCache.Volumes;

/// <summary>
/// What depends on a volume and would break if it went away: its kept snapshots, and the clones that
/// still read through to one of them. Deleting a volume is refused while anything does, unless forced.
/// </summary>
public sealed class VolumeDependents(SnapshotCatalog snapshots, SnapshotClones clones)
{
    /// <summary>The names of the snapshots and clones that need <paramref name="volume"/>, e.g. "snapshot vol0@before-upgrade".</summary>
    public Task<IReadOnlyList<string>> OfAsync(string volume, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<string>>([.. snapshots.List(volume).Select(s => $"snapshot {s.Export}"), .. clones.ClonesOfVolume(volume)]);
}
