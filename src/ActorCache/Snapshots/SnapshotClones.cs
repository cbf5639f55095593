using System.Collections.Concurrent;
using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Volumes;
using Microsoft.Extensions.Logging;

namespace ActorCache.Snapshots;

/// <summary>
/// The clones of this node that still read through to their snapshot, and how a clone's stack opens
/// its snapshot: a view of the past of the origin volume, which protects the snapshot's point for as
/// long as the clone needs it. A snapshot (and its volume) cannot be deleted while such a clone exists.
/// </summary>
public sealed class SnapshotClones(SnapshotCatalog snapshots, ExportCatalog exports, ILogger<SnapshotClones> logger)
{
    private readonly ConcurrentDictionary<string, CloneOrigin> _dependent = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _changes = new(1, 1);

    /// <summary>
    /// Held while a clone's snapshot is checked and the clone reserved, and while a snapshot or volume is deleted: a delete never
    /// misses a clone being made of what it deletes, and a clone never starts from a snapshot being deleted.
    /// </summary>
    public async Task<IDisposable> HoldAsync(CancellationToken cancellationToken)
    {
        await _changes.WaitAsync(cancellationToken).ConfigureAwait(false);
        return new Release(_changes);
    }

    private sealed class Release(SemaphoreSlim changes) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) changes.Release();
        }
    }

    /// <summary>A clone being made counts as one from now on (under <see cref="HoldAsync"/>); false when a clone of that name is known already.</summary>
    public bool Reserve(string clone, CloneOrigin origin) => _dependent.TryAdd(clone, origin);

    /// <summary>Notes a volume that is a clone still reading through to its snapshot.</summary>
    public void Track(VolumeDefinition definition)
    {
        if (definition.Origin is not { } origin) return;
        try
        {
            if (CloneBacking.IsIndependent(definition.CloneMapPath)) return;
        }
        catch (Exception e) when (e is BlockTargetException or IOException or UnauthorizedAccessException)
        {
            // Its map cannot be read: the clone goes offline when it opens, and still counts as needing its snapshot.
            logger.LogWarning("clone {Name}: cannot read its map {Map}: {Reason}", definition.Name, definition.CloneMapPath, e.Message);
        }
        _dependent[definition.Name] = origin;
    }

    /// <summary>
    /// Whether a clone still reading through to a snapshot of <paramref name="volume"/> at batch <paramref name="sequence"/> exists,
    /// open or not: the cache never expires that point for snapshot-space (an open clone's view protects it anyway; one that is
    /// offline, or opens after its origin at node start, would find its snapshot gone for good and lose every block it has not written).
    /// </summary>
    public bool Needs(string volume, long sequence) =>
        _dependent.Values.Any(origin => origin.Volume == volume && snapshots.Find(origin.Volume, origin.Snapshot)?.Sequence == sequence);

    /// <summary>The clone went away or no longer needs its snapshot.</summary>
    public void Forget(string clone) => _dependent.TryRemove(clone, out _);

    public IReadOnlyList<string> ClonesOf(string volume, string snapshot) =>
        [.. _dependent.Where(c => c.Value.Volume == volume && c.Value.Snapshot == snapshot).Select(c => c.Key).Order(StringComparer.Ordinal)];

    /// <summary>The names of the clones that read through to a snapshot of <paramref name="volume"/>.</summary>
    public IReadOnlyList<string> CloneNamesOfVolume(string volume) =>
        [.. _dependent.Where(c => c.Value.Volume == volume).Select(c => c.Key)];

    /// <summary>Every dependent clone of any snapshot of <paramref name="volume"/>, as "clone NAME of VOL@SNAP".</summary>
    public IReadOnlyList<string> ClonesOfVolume(string volume) =>
        [.. _dependent.Where(c => c.Value.Volume == volume).Select(c => $"clone {c.Key} of {c.Value}").Order(StringComparer.Ordinal)];

    /// <summary>Opens the snapshot a clone reads through to; throws (the clone stays offline with the reason) when it cannot.</summary>
    public async Task<IBlockTarget> OpenOriginAsync(CloneOrigin origin)
    {
        var snapshot = snapshots.Find(origin.Volume, origin.Snapshot)
                       ?? throw new BlockTargetException(BlockError.InvalidRequest, $"its snapshot {origin} no longer exists");
        if (snapshot.Expired is not null)
            throw new BlockTargetException(BlockError.InvalidRequest, $"its snapshot {origin} expired (kept snapshots needed more than cache.snapshot-space)");
        if (!exports.TryGetVolume(origin.Volume, out var volume))
            throw new BlockTargetException(BlockError.InvalidRequest, $"the volume of its snapshot {origin} is not online" +
                                                                      (exports.WhyUnavailable(origin.Volume) is { } why ? $" ({why})" : ""));
        var open = new OpenPastView(PointQuery.Known(snapshot.Point));
        if (!await volume.Target.TrySendAsync(open))
            throw new BlockTargetException(BlockError.InvalidRequest, $"volume {origin.Volume} keeps no history");
        logger.LogDebug("opened {Origin} for a clone", origin);
        return open.Result!;
    }
}
