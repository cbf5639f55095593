using System.Collections.Concurrent;
using ActorCache.Nbd;

namespace ActorCache.Volumes;

/// <summary>The volumes this node serves, by export name. Volume actors publish and withdraw; the NBD front reads.</summary>
public sealed class ExportCatalog(string defaultExport) : INbdExportCatalog
{
    private readonly ConcurrentDictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);

    public void Publish(Volume volume) =>
        _exports[volume.Definition.Name] = new NbdExport(volume.Definition.Name, Describe(volume.Definition), volume, volume.IsReadOnly);

    public void Withdraw(string name) => _exports.TryRemove(name, out _);

    public bool TryGet(string name, out NbdExport export)
    {
        if (name.Length == 0)
        {
            // The empty name is the default volume: the configured one, or the only one there is.
            if (defaultExport.Length > 0) name = defaultExport;
            else if (_exports.Count == 1) name = _exports.Keys.First();
            else if (_exports.ContainsKey("vol0")) name = "vol0";
        }
        return _exports.TryGetValue(name, out export!);
    }

    public IReadOnlyList<NbdExport> List() => [.. _exports.Values.OrderBy(e => e.Name, StringComparer.Ordinal)];

    private static string Describe(VolumeDefinition v) =>
        $"ActorCache volume {v.Name}, {Blocks.ByteSize.Format(v.Size)}, {VolumeSpec.FormatMode(v.Mode)}{(v.ReadOnly ? ", read-only" : "")}";
}
