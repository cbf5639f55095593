using System.Text.RegularExpressions;
using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Snapshots;

/// <summary>Why a snapshot request was refused (a bad name, an unknown volume, a point out of the window, in use): the message says what to do.</summary>
public sealed class SnapshotRefusedException(string message) : Exception(message);

/// <summary>
/// Snapshots after the fact (DESIGN §3 "Snapshots"): resolves the point a user names, has the volume's
/// cache keep it restorable (no data is copied), and records the snapshot durably in the registry
/// before answering. Deleting gives the point back to the destager. The admin API calls this.
/// </summary>
public sealed partial class SnapshotService(ActorRegistry registry, ExportCatalog exports, SnapshotCatalog catalog, SnapshotClones clones,
    ILogger<SnapshotService> logger)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    // Expiries as they come (MarkExpired): a snapshot being made checks none took its point meanwhile. Points are few and expire
    // once, so the map stays small.
    private readonly Lock _expiryGate = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Volume, long Sequence), long> _expiredAt = new();
    private long _expiries;

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex NamePattern();

    /// <summary>Refuses names that are not <c>[A-Za-z0-9._-]{1,64}</c> or that an export name would read as a point.</summary>
    public static string? CheckName(string name) =>
        !NamePattern().IsMatch(name) ? $"snapshot name '{name}' is not allowed; use 1-64 letters, digits, '.', '_' or '-'"
        : PointSpec.LooksLikePoint(name) ? $"snapshot name '{name}' would read as a point in time in an export name; choose another"
        : null;

    /// <summary>Keeps <paramref name="volume"/> at <paramref name="at"/> (null: now, after a FLUSH) as snapshot <paramref name="name"/>.</summary>
    public async Task<SnapshotRecord> CreateAsync(string volume, string name, PointQuery? at, CancellationToken ct) =>
        (await CreateAsync([volume], name, at, ct))[0];

    /// <summary>
    /// Keeps several volumes as snapshots of one name. Now (no point given) is one barrier across them:
    /// new writes to all of them wait while each is flushed, so every write acknowledged before the
    /// barrier is in each snapshot and none acknowledged after it. All or nothing.
    /// </summary>
    public async Task<IReadOnlyList<SnapshotRecord>> CreateAsync(IReadOnlyList<string> volumes, string name, PointQuery? at, CancellationToken ct)
    {
        if (CheckName(name) is { } bad) throw new SnapshotRefusedException(bad);
        if (volumes.Count == 0 || volumes.Distinct().Count() != volumes.Count) throw new SnapshotRefusedException("name each volume once");
        var targets = volumes.Select(VolumeTarget).ToList();
        foreach (var volume in volumes)
            if (catalog.Find(volume, name) is not null) throw new SnapshotRefusedException($"volume {volume} already has a snapshot named {name}");

        var points = new List<SyncPoint>();
        var expiriesBefore = Interlocked.Read(ref _expiries);
        try
        {
            if (at is null && targets.Count > 1)
            {
                var paused = new List<IBlockTarget>();
                try
                {
                    foreach (var target in targets)
                    {
                        paused.Add(target);
                        await target.TrySendAsync(new PauseWrites(), ct);
                    }
                    foreach (var target in targets) await target.FlushAsync(ct).AsTask().WaitAsync(BarrierTimeout, ct);
                    for (var i = 0; i < targets.Count; i++) points.Add(await KeepAsync(volumes[i], targets[i], PointQuery.Newest, ct));
                }
                finally
                {
                    foreach (var target in paused) await target.TrySendAsync(new ResumeWrites(), CancellationToken.None);
                }
            }
            else
            {
                for (var i = 0; i < targets.Count; i++)
                {
                    if (at is null) await targets[i].FlushAsync(ct); // "now" is the generation this FLUSH closes
                    points.Add(await KeepAsync(volumes[i], targets[i], at ?? PointQuery.Newest, ct));
                }
            }

            // From here on nothing is cancelled with the request: a record persisted without its point protected
            // would name a state nobody keeps. Any failure takes every record of this request back out.
            var records = new List<SnapshotRecord>();
            var snapshotRegistry = await registry.GetAsync<SnapshotRegistry>(CancellationToken.None);
            try
            {
                foreach (var (volume, point) in volumes.Zip(points))
                {
                    var record = new SnapshotRecord(volume, name, point.Generation, point.TimeMicros, point.Sequence, point.EndAddress, DateTimeOffset.UtcNow);
                    records.Add(record); // before the Ask: a timeout may come after the registry persisted it
                    if (await snapshotRegistry.Ask<object>(new KeepSnapshot(record), AskTimeout, CancellationToken.None) is SnapshotRefused refused)
                    {
                        records.RemoveAt(records.Count - 1); // refused: not persisted, and maybe another request's
                        throw new SnapshotRefusedException(refused.Reason);
                    }
                }
            }
            catch
            {
                foreach (var done in records)
                    await snapshotRegistry.Ask<object>(new DeleteSnapshot(done.Volume, done.Name), AskTimeout, CancellationToken.None);
                throw;
            }
            // The cache may have expired a point while it was being kept here (MarkExpired): it dropped every kept snapshot's hold on
            // it, this one's too, and marked only the records it found listed. Either the expiry is seen here, or it comes after the
            // records are listed and marks them: never a snapshot listed as valid whose point nobody protects.
            SnapshotRecord? lost;
            lock (_expiryGate)
            {
                lost = records.FirstOrDefault(r => ExpiredSince(r.Volume, r.Sequence, expiriesBefore));
                if (lost is null) foreach (var record in records) catalog.Add(record);
            }
            if (lost is not null)
            {
                foreach (var record in records)
                    await snapshotRegistry.Ask<object>(new DeleteSnapshot(record.Volume, record.Name), AskTimeout, CancellationToken.None);
                throw new SnapshotRefusedException($"the point of {lost.Export} expired while the snapshot was being made: older snapshots' preserved " +
                                                   "copies fill cache.snapshot-space (delete some, or raise it); nothing was kept");
            }
            foreach (var record in records)
                logger.LogInformation("snapshot {Export} kept: generation {Generation} of {Time:yyyy-MM-ddTHH:mm:ss.fffZ}", record.Export, record.Generation,
                    record.Point.Time);
            return records;
        }
        catch
        {
            // Not a point that expired meanwhile: the expiry dropped this request's hold already, and one kept again since is another's.
            for (var i = 0; i < points.Count; i++)
                if (!ExpiredSince(volumes[i], points[i].Sequence, expiriesBefore))
                    await targets[i].TrySendAsync(new ReleasePoint(points[i].Sequence), CancellationToken.None);
            throw;
        }
    }

    /// <summary>Whether the volume's point at <paramref name="sequence"/> expired after the expiry count <paramref name="since"/>.</summary>
    private bool ExpiredSince(string volume, long sequence, long since) =>
        _expiredAt.TryGetValue((volume, sequence), out var expiry) && expiry > since;

    /// <summary>Longest a barrier across volumes holds their writes back.</summary>
    private static readonly TimeSpan BarrierTimeout = TimeSpan.FromSeconds(30);

    private static async Task<SyncPoint> KeepAsync(string volume, IBlockTarget target, PointQuery query, CancellationToken ct)
    {
        var keep = new KeepPoint(query);
        try
        {
            if (!await target.TrySendAsync(keep, ct)) throw new SnapshotRefusedException($"volume {volume} keeps no history (pass-through volumes have no log)");
        }
        catch (BlockTargetException e)
        {
            throw new SnapshotRefusedException(e.Message);
        }
        return keep.Result!.Value;
    }

    /// <summary>Deletes a snapshot: refused while a client reads its export.</summary>
    public async Task<SnapshotRecord> DeleteAsync(string volume, string name, CancellationToken ct)
    {
        using var hold = await clones.HoldAsync(ct); // no clone of it starts meanwhile
        var snapshot = catalog.Find(volume, name) ?? throw new SnapshotNotFoundException($"volume {volume} has no snapshot named {name}");
        if (clones.ClonesOf(volume, name) is { Count: > 0 } dependent)
            throw new SnapshotRefusedException($"snapshot {snapshot.Export} is the origin of clone(s) {string.Join(", ", dependent)}; delete them or make them independent first");
        if (exports.ClientsOf(snapshot.Export) is var clients and > 0)
            throw new SnapshotRefusedException($"snapshot {snapshot.Export} is in use by {clients} NBD connection(s); disconnect them first");
        var snapshotRegistry = await registry.GetAsync<SnapshotRegistry>(ct);
        var reply = await snapshotRegistry.Ask<object>(new DeleteSnapshot(volume, name), AskTimeout, ct);
        if (reply is SnapshotRefused refused) throw new SnapshotRefusedException(refused.Reason);
        catalog.Remove(volume, name);
        // Another snapshot may name the same point: it stays protected (points are counted). An expired one protects nothing.
        if (snapshot.Expired is null && exports.TryGetVolume(volume, out var export)) await export.Target.TrySendAsync(new ReleasePoint(snapshot.Sequence), ct);
        logger.LogInformation("snapshot {Export} deleted", snapshot.Export);
        return snapshot;
    }

    public IReadOnlyList<SnapshotRecord> List(string? volume = null) => catalog.List(volume);

    /// <summary>The volumes cloned from a snapshot that still read through to it.</summary>
    public IReadOnlyList<string> ClonesOf(string volume, string name) => clones.ClonesOf(volume, name);

    /// <summary>
    /// The cache gave up a kept point to stay within cache.snapshot-space: every snapshot of the volume at
    /// it is marked expired (durably), stays listed as such, and no longer reads.
    /// </summary>
    public void MarkExpired(string volume, long sequence)
    {
        lock (_expiryGate)
        {
            _expiredAt[(volume, sequence)] = Interlocked.Increment(ref _expiries);
            foreach (var snapshot in catalog.List(volume).Where(s => s.Sequence == sequence && s.Expired is null))
            {
                catalog.Add(snapshot with { Expired = DateTimeOffset.UtcNow });
                logger.LogWarning("snapshot {Export} EXPIRED: kept snapshots needed more than cache.snapshot-space; it no longer reads", snapshot.Export);
            }
        }
        _ = registry.GetAsync<SnapshotRegistry>().ContinueWith(r => r.Result.Tell(new ExpireSnapshots(volume, sequence)), TaskContinuationOptions.OnlyOnRanToCompletion);
    }

    /// <summary>The volume's restorable points, oldest first (empty for a volume without a log).</summary>
    public async Task<IReadOnlyList<HistoryEntry>> HistoryAsync(string volume, CancellationToken ct)
    {
        var read = new ReadHistory();
        return await VolumeTarget(volume).TrySendAsync(read, ct) ? read.Result! : [];
    }

    private IBlockTarget VolumeTarget(string volume) =>
        exports.TryGetVolume(volume, out var export) ? export.Target
        : exports.WhyUnavailable(volume) is { } offline ? throw new SnapshotRefusedException(offline)
        : throw new VolumeNotFoundException(volume);
}
