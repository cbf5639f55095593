using ActorCache.Blocks;
using ActorCache.Volumes;
using Microsoft.Extensions.Logging;

namespace ActorCache.Snapshots;

/// <summary>
/// Makes a writable volume from a kept snapshot (DESIGN §3 "Snapshots"): a thin clone, served at once,
/// whose unwritten blocks read through to the snapshot (<see cref="CloneBacking"/> below the clone's
/// own cache), and which can later copy the rest and stand alone (<see cref="MakeIndependentAsync"/>).
/// </summary>
public sealed class CloneCreation(SnapshotCatalog snapshots, ExportCatalog exports, VolumeCreation creation, SnapshotClones clones,
    ILogger<CloneCreation> logger)
{
    /// <summary>Creates clone <paramref name="name"/> of <paramref name="volume"/>@<paramref name="snapshot"/>, with the checks of <c>volume create</c>.</summary>
    public async Task<VolumeDefinition> CreateAsync(string volume, string snapshot, string name, string? mode, CancellationToken ct)
    {
        SnapshotRecord record;
        VolumeSpec spec;
        var cloneOrigin = new CloneOrigin(volume, snapshot);
        using (await clones.HoldAsync(ct))
        {
            record = snapshots.Find(volume, snapshot) ?? throw new SnapshotNotFoundException($"volume {volume} has no snapshot named {snapshot}");
            if (record.Expired is not null) throw new SnapshotRefusedException($"snapshot {record.Export} expired; it no longer reads, so it cannot be cloned");
            if (!exports.TryGetVolume(volume, out var origin))
                throw new SnapshotRefusedException(exports.WhyUnavailable(volume) ?? $"volume {volume} is not online");
            if (!VolumeSpec.TryCreate(name, origin.Target.Size, mode, backing: null, readOnly: false, out var parsed, out var error))
                throw new SnapshotRefusedException(error);
            spec = parsed!;
            // From here a delete of the snapshot or its volume sees the clone, and the snapshot's point is pinned, while it is made.
            if (!clones.Reserve(name, cloneOrigin)) throw new VolumeConflictException($"volume {name} already exists");
        }
        VolumeDefinition definition;
        try
        {
            definition = await creation.CreateAsync(spec, ct, cloneOrigin);
        }
        catch
        {
            clones.Forget(name);
            throw;
        }
        logger.LogInformation("volume {Name} is a clone of {Export}, generation {Generation}", name, record.Export, record.Generation);
        return definition;
    }

    /// <summary>Copies what the clone still reads from its snapshot, reporting blocks done, then lets the snapshot go.</summary>
    public async Task MakeIndependentAsync(string clone, Action<long, long> progress, CancellationToken ct)
    {
        if (!exports.TryGetVolume(clone, out var export)) throw new SnapshotRefusedException($"volume {clone} is not online");
        if (!await export.Target.TrySendAsync(new MakeIndependent(progress), ct))
            throw new SnapshotRefusedException($"volume {clone} is not a clone");
        clones.Forget(clone);
        logger.LogInformation("clone {Name} is independent: every block is its own, it no longer reads its snapshot", clone);
    }
}
