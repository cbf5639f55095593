using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Snapshots;

/// <summary>A snapshot the user named does not exist: 404 on the admin API.</summary>
public sealed class SnapshotNotFoundException(string message) : Exception(message);

/// <summary>Reading snapshots and history: points named by users, diffs, the space each snapshot holds.</summary>
public sealed partial class SnapshotService
{
    /// <summary>
    /// The point <paramref name="spec"/> names in <paramref name="volume"/>'s history: <c>gen:N</c>, a
    /// time (ISO-8601 UTC or relative) or a kept snapshot's name.
    /// </summary>
    public PointQuery ResolvePoint(string volume, string spec)
    {
        if (PointSpec.TryParse(spec, DateTimeOffset.UtcNow, out var query)) return query!;
        var snapshot = catalog.Find(volume, spec)
                       ?? throw new SnapshotNotFoundException($"volume {volume} has no snapshot named '{spec}', and '{spec}' is not a point ({PointSpec.Forms})");
        if (snapshot.Expired is { } expired)
            throw new SnapshotRefusedException($"snapshot {snapshot.Export} expired at {expired:yyyy-MM-ddTHH:mm:ssZ} (kept snapshots needed more than cache.snapshot-space); it no longer reads");
        return PointQuery.Known(snapshot.Point);
    }

    /// <summary>
    /// The byte ranges whose content may differ between <paramref name="from"/> (<c>VOL@POINT</c>) and
    /// <paramref name="to"/> (<c>VOL@POINT</c>, or <c>VOL</c>: the live volume), from the log and the
    /// preserved copies, without reading the blocks. No false negatives; a range may have been
    /// rewritten with the same bytes.
    /// </summary>
    public async Task<IReadOnlyList<ChangedRange>> DiffAsync(string from, string to, CancellationToken ct)
    {
        var (fromVolume, fromPoint) = SplitExport(from);
        var (toVolume, toPoint) = SplitExport(to);
        if (fromPoint is null) throw new SnapshotRefusedException($"'{from}': name the older side as VOL@SNAPSHOT or VOL@POINT ({PointSpec.Forms})");
        if (fromVolume != toVolume) throw new SnapshotRefusedException($"'{from}' and '{to}' are points of different volumes; a diff compares one volume's history");
        var target = VolumeTarget(fromVolume);
        var diff = new DiffPoints(ResolvePoint(fromVolume, fromPoint), toPoint is null ? null : ResolvePoint(toVolume, toPoint));
        try
        {
            if (!await target.TrySendAsync(diff, ct)) throw new SnapshotRefusedException($"volume {fromVolume} keeps no history (pass-through volumes have no log)");
        }
        catch (BlockTargetException e)
        {
            throw new SnapshotRefusedException(e.Message);
        }
        return diff.Result!;
    }

    /// <summary>Bytes of preserved copies only one kept point reads, by the point's batch sequence; empty for a volume without a log.</summary>
    public async Task<IReadOnlyDictionary<long, long>> ExclusiveBytesAsync(string volume, CancellationToken ct)
    {
        if (!exports.TryGetVolume(volume, out var export)) return new Dictionary<long, long>();
        var read = new ReadExclusiveBytes();
        return await export.Target.TrySendAsync(read, ct) ? read.Result! : new Dictionary<long, long>();
    }

    /// <summary>Deletes every snapshot of a volume that is being deleted by force, and gives their points back to its cache.</summary>
    public async Task ForgetVolumeAsync(string volume, CancellationToken ct)
    {
        var snapshotRegistry = await registry.GetAsync<SnapshotRegistry>(ct);
        foreach (var snapshot in catalog.List(volume))
        {
            await snapshotRegistry.Ask<object>(new DeleteSnapshot(volume, snapshot.Name), AskTimeout, ct);
            catalog.Remove(volume, snapshot.Name);
            if (snapshot.Expired is null && exports.TryGetVolume(volume, out var export))
                await export.Target.TrySendAsync(new ReleasePoint(snapshot.Sequence), ct);
            logger.LogWarning("snapshot {Export} deleted with its volume (forced)", snapshot.Export);
        }
    }

    /// <summary><c>VOL@POINT</c> as (VOL, POINT); <c>VOL</c> as (VOL, null).</summary>
    public static (string Volume, string? Point) SplitExport(string export)
    {
        var at = export.IndexOf('@');
        return at < 0 ? (export, null) : (export[..at], export[(at + 1)..]);
    }
}
