using System.Collections.Concurrent;
using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Nbd;
using ActorCache.Snapshots;

namespace ActorCache.Volumes;

/// <summary>
/// What this node serves over NBD, by export name: its volumes (volume actors publish and withdraw
/// them), and the volumes' past, <c>VOL@POINT</c>: a kept snapshot (<c>VOL@NAME</c>, also listed) or any
/// restorable point without one (<c>VOL@-5m</c>, <c>VOL@2026-12-04T10:42:07Z</c>, <c>VOL@gen:1234</c>).
/// A view of the past is opened for one client and protects its history until the client leaves.
/// </summary>
public sealed class ExportCatalog(string defaultExport, SnapshotCatalog? snapshots = null) : INbdExportCatalog
{
    private readonly ConcurrentDictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _offline = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _viewsOpen = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, VolumeRecovery> _recovering = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _refused = new(StringComparer.Ordinal); // volume -> why NBD clients cannot have it here
    private readonly SnapshotCatalog _snapshots = snapshots ?? new SnapshotCatalog();

    public void Publish(Volume volume)
    {
        _offline.TryRemove(volume.Definition.Name, out _);
        _exports[volume.Definition.Name] = new NbdExport(volume.Definition.Name, Describe(volume.Definition), volume, volume.IsReadOnly);
    }

    /// <summary>Stops serving a volume; an offline one is forgotten too (a deleted volume is not "offline").</summary>
    public void Withdraw(string name)
    {
        _exports.TryRemove(name, out _);
        _offline.TryRemove(name, out _);
    }

    /// <summary>A volume of this node that could not come online: not served, but clients asking for it are told why.</summary>
    public void MarkOffline(string name, string reason)
    {
        _exports.TryRemove(name, out _);
        _offline[name] = reason;
    }

    /// <summary>A volume that is opening (replaying its log): clients asking for it are told how far it is.</summary>
    public void MarkRecovering(string name, VolumeRecovery recovery) => _recovering[name] = recovery;

    public void EndRecovering(string name, VolumeRecovery recovery) => _recovering.TryRemove(new KeyValuePair<string, VolumeRecovery>(name, recovery));

    /// <summary>
    /// The volume is not served to NBD clients here, for <paramref name="reason"/> (a secondary replica:
    /// only its primary serves it read-write). Its past (<c>VOL@POINT</c>) is still served.
    /// </summary>
    public void Refuse(string name, string reason) => _refused[name] = reason;

    public void Serve(string name) => _refused.TryRemove(name, out _);

    public bool TryGet(string name, out NbdExport export)
    {
        var resolved = Resolve(name);
        if (_refused.ContainsKey(resolved))
        {
            export = null!;
            return false;
        }
        return _exports.TryGetValue(resolved, out export!);
    }

    /// <summary>The volume named exactly <paramref name="name"/> (never the default export the empty name stands for), if it is served.</summary>
    public bool TryGetVolume(string name, out NbdExport export)
    {
        export = null!;
        return name.Length > 0 && _exports.TryGetValue(name, out export!);
    }

    public string? WhyUnavailable(string name)
    {
        var volume = Resolve(name.Split('@')[0]);
        if (_offline.TryGetValue(volume, out var reason)) return $"volume {volume} is offline: {reason}";
        if (_refused.TryGetValue(volume, out var refusal) && !name.Contains('@')) return $"volume {volume}: {refusal}";
        return _recovering.TryGetValue(volume, out var recovery) && !recovery.Finished
            ? $"volume {volume} is not served yet, it is {recovery.Describe()}; try again shortly"
            : null;
    }

    /// <summary>How many clients have <paramref name="export"/> (<c>VOL@NAME</c>) open right now.</summary>
    public int ClientsOf(string export) => _viewsOpen.GetValueOrDefault(export);

    public async ValueTask<NbdExport?> OpenAsync(string name, CancellationToken cancellationToken)
    {
        var at = name.IndexOf('@');
        if (at < 0) return TryGet(name, out var export) ? export : null;
        var volumeName = name[..at];
        var spec = name[(at + 1)..];
        if (!_exports.TryGetValue(volumeName, out var volume)) return null;
        var (query, what) = PointOf(volumeName, spec);

        var open = new OpenPastView(query);
        try
        {
            if (!await volume.Target.TrySendAsync(open, cancellationToken)) throw new NbdProtocolException($"volume {volumeName} keeps no history (no cache)");
        }
        catch (BlockTargetException e)
        {
            throw new NbdProtocolException(e.Message);
        }
        var view = open.Result!;
        _viewsOpen.AddOrUpdate(name, 1, (_, n) => n + 1);
        var description = $"ActorCache volume {volumeName} {what}: generation {view.Point.Generation}, {view.Point.Time:yyyy-MM-ddTHH:mm:ss.fffZ}, read-only";
        return new NbdExport(name, description, view, ReadOnly: true) { Lease = new ViewLease(view, () => _viewsOpen.AddOrUpdate(name, 0, (_, n) => n - 1)) };
    }

    /// <summary>
    /// The ranges that may differ between the point <paramref name="bitmap"/> names (a kept snapshot of the
    /// export's volume, or a point such as <c>gen:N</c> or <c>-5m</c>) and the opened export: a view's own
    /// point, or the live volume. A live volume is flushed first, so every write acknowledged before the
    /// client attached is in the answer (the diff reads the log). The cache refuses a point older than the
    /// log covers and one newer than the export's.
    /// </summary>
    public async ValueTask<IReadOnlyList<(long Offset, long Length)>?> DirtyRangesAsync(NbdExport export, string bitmap, CancellationToken cancellationToken)
    {
        var volumeName = VolumeOf(export.Name);
        if (!_exports.TryGetValue(volumeName, out var volume)) return null;
        var (from, _) = PointOf(volumeName, bitmap);
        var view = export.Target as GenerationView;
        var diff = new DiffPoints(from, view is null ? null : PointQuery.Known(view.Point));
        try
        {
            if (view is null) await volume.Target.FlushAsync(cancellationToken);
            if (!await volume.Target.TrySendAsync(diff, cancellationToken)) throw new NbdProtocolException($"volume {volumeName} keeps no history (no cache)");
        }
        catch (BlockTargetException e)
        {
            throw new NbdProtocolException(e.Message);
        }
        return [.. diff.Result!.Select(r => (r.Offset, r.Length))];
    }

    /// <summary>The kept snapshots of the export's volume older than the export (all of them for the live volume), by name.</summary>
    public IReadOnlyList<string> DirtyBitmaps(NbdExport export)
    {
        var before = export.Target is GenerationView view ? view.Point.Sequence : long.MaxValue;
        return [.. _snapshots.List(VolumeOf(export.Name)).Where(s => s.Expired is null && s.Sequence < before).Select(s => s.Name)];
    }

    private static string VolumeOf(string export) => export.IndexOf('@') is var at and >= 0 ? export[..at] : export;

    /// <summary>
    /// What <paramref name="spec"/> (after the <c>@</c> of an export name, or a dirty bitmap's name) means on
    /// a volume: a point (<see cref="PointSpec"/>) or a kept snapshot's name, with words for descriptions.
    /// </summary>
    private (PointQuery Query, string What) PointOf(string volumeName, string spec)
    {
        if (PointSpec.TryParse(spec, DateTimeOffset.UtcNow, out var parsed)) return (parsed!, $"as of {spec}");
        if (_snapshots.Find(volumeName, spec) is not { } snapshot)
            throw new NbdProtocolException($"volume {volumeName} has no snapshot named '{spec}', and '{spec}' is not a point ({PointSpec.Forms})");
        if (snapshot.Expired is { } expired)
            throw new NbdProtocolException($"snapshot {snapshot.Export} expired at {expired:yyyy-MM-ddTHH:mm:ssZ} (kept snapshots needed more than cache.snapshot-space)");
        return (PointQuery.Known(snapshot.Point), $"snapshot {spec}");
    }

    /// <summary>The empty name is the default volume: the configured one, or the only one there is (offline ones count).</summary>
    private string Resolve(string name)
    {
        if (name.Length > 0) return name;
        if (defaultExport.Length > 0) return defaultExport;
        var all = _exports.Keys.Concat(_offline.Keys).Distinct().ToList();
        if (all.Count == 1) return all[0];
        return all.Contains("vol0") ? "vol0" : "";
    }

    /// <summary>Every volume, and every kept snapshot of a served volume (as <c>VOL@NAME</c>).</summary>
    public IReadOnlyList<NbdExport> List()
    {
        var snapshots = _snapshots.List()
            .Where(s => _exports.ContainsKey(s.Volume) && s.Expired is null)
            .Select(s => new NbdExport(s.Export, $"ActorCache snapshot {s.Name} of {s.Volume}: generation {s.Generation}, " +
                                                 $"{s.Point.Time:yyyy-MM-ddTHH:mm:ss.fffZ}, read-only", _exports[s.Volume].Target, ReadOnly: true));
        return [.. _exports.Values.Concat(snapshots).OrderBy(e => e.Name, StringComparer.Ordinal)];
    }

    private static string Describe(VolumeDefinition v) =>
        $"ActorCache volume {v.Name}, {ByteSize.Format(v.Size)}, {VolumeSpec.FormatMode(v.Mode)}{(v.ReadOnly ? ", read-only" : "")}";

    /// <summary>Closes the view (its history goes back to the destager) and counts its client out.</summary>
    private sealed class ViewLease(GenerationView view, Action done) : IAsyncDisposable
    {
        private int _released;

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0) return;
            done();
            await view.DisposeAsync();
        }
    }
}
