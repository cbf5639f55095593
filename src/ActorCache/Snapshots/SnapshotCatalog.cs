using System.Collections.Concurrent;

namespace ActorCache.Snapshots;

/// <summary>
/// The kept snapshots this node serves, by volume and name: a copy of the registry's list that the NBD
/// front and the admin listener read without asking the registry. The snapshot service changes it
/// after the registry has persisted the change.
/// </summary>
public sealed class SnapshotCatalog
{
    private readonly ConcurrentDictionary<(string Volume, string Name), SnapshotRecord> _snapshots = new();

    public void Load(IEnumerable<SnapshotRecord> snapshots)
    {
        foreach (var snapshot in snapshots) Add(snapshot);
    }

    public void Add(SnapshotRecord snapshot) => _snapshots[(snapshot.Volume, snapshot.Name)] = snapshot;

    public void Remove(string volume, string name) => _snapshots.TryRemove((volume, name), out _);

    public SnapshotRecord? Find(string volume, string name) => _snapshots.GetValueOrDefault((volume, name));

    /// <summary>Every snapshot, or one volume's, ordered by volume, then generation.</summary>
    public IReadOnlyList<SnapshotRecord> List(string? volume = null) =>
        [.. _snapshots.Values.Where(s => volume is null || s.Volume == volume)
            .OrderBy(s => s.Volume, StringComparer.Ordinal).ThenBy(s => s.Generation).ThenBy(s => s.Name, StringComparer.Ordinal)];

    /// <summary>The batch sequence numbers a volume's kept snapshots protect.</summary>
    public IReadOnlyList<long> KeptSequences(string volume) => [.. List(volume).Where(s => s.Expired is null).Select(s => s.Sequence)];
}
