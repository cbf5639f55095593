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

    public bool TryGet(string name, out NbdExport export) => _exports.TryGetValue(Resolve(name), out export!);

    public string? WhyUnavailable(string name) =>
        _offline.TryGetValue(Resolve(name.Split('@')[0]), out var reason) ? $"volume {Resolve(name.Split('@')[0])} is offline: {reason}" : null;

    /// <summary>How many clients have <paramref name="export"/> (<c>VOL@NAME</c>) open right now.</summary>
    public int ClientsOf(string export) => _viewsOpen.GetValueOrDefault(export);

    public async ValueTask<NbdExport?> OpenAsync(string name, CancellationToken cancellationToken)
    {
        var at = name.IndexOf('@');
        if (at < 0) return TryGet(name, out var export) ? export : null;
        var volumeName = name[..at];
        var spec = name[(at + 1)..];
        if (!_exports.TryGetValue(volumeName, out var volume)) return null;
        PointQuery query;
        string what;
        if (PointSpec.TryParse(spec, DateTimeOffset.UtcNow, out var parsed))
            (query, what) = (parsed!, $"as of {spec}");
        else if (_snapshots.Find(volumeName, spec) is { } snapshot)
        {
            if (snapshot.Expired is { } expired)
                throw new NbdProtocolException($"snapshot {snapshot.Export} expired at {expired:yyyy-MM-ddTHH:mm:ssZ} (kept snapshots needed more than cache.snapshot-space)");
            (query, what) = (PointQuery.Known(snapshot.Point), $"snapshot {spec}");
        }
        else
            throw new NbdProtocolException($"volume {volumeName} has no snapshot named '{spec}', and '{spec}' is not a point ({PointSpec.Forms})");

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
