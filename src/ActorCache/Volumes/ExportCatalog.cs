using System.Collections.Concurrent;
using ActorCache.Nbd;

namespace ActorCache.Volumes;

/// <summary>The volumes this node serves, by export name. Volume actors publish and withdraw; the NBD front reads.</summary>
public sealed class ExportCatalog(string defaultExport) : INbdExportCatalog
{
    private readonly ConcurrentDictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _offline = new(StringComparer.Ordinal);

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
        _offline.TryGetValue(Resolve(name), out var reason) ? $"volume {Resolve(name)} is offline: {reason}" : null;

    /// <summary>The empty name is the default volume: the configured one, or the only one there is (offline ones count).</summary>
    private string Resolve(string name)
    {
        if (name.Length > 0) return name;
        if (defaultExport.Length > 0) return defaultExport;
        var all = _exports.Keys.Concat(_offline.Keys).Distinct().ToList();
        if (all.Count == 1) return all[0];
        return all.Contains("vol0") ? "vol0" : "";
    }

    public IReadOnlyList<NbdExport> List() => [.. _exports.Values.OrderBy(e => e.Name, StringComparer.Ordinal)];

    private static string Describe(VolumeDefinition v) =>
        $"ActorCache volume {v.Name}, {Blocks.ByteSize.Format(v.Size)}, {VolumeSpec.FormatMode(v.Mode)}{(v.ReadOnly ? ", read-only" : "")}";
}
