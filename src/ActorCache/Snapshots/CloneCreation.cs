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
        var record = snapshots.Find(volume, snapshot) ?? throw new SnapshotNotFoundException($"volume {volume} has no snapshot named {snapshot}");
        if (record.Expired is not null) throw new SnapshotRefusedException($"snapshot {record.Export} expired; it no longer reads, so it cannot be cloned");
        if (!exports.TryGetVolume(volume, out var origin))
            throw new SnapshotRefusedException(exports.WhyUnavailable(volume) ?? $"volume {volume} is not online");
        if (!VolumeSpec.TryCreate(name, origin.Target.Size, mode, backing: null, readOnly: false, out var spec, out var error))
            throw new SnapshotRefusedException(error);
        var definition = await creation.CreateAsync(spec!, ct, new CloneOrigin(volume, snapshot));
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
