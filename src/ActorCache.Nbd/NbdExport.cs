using ActorCache.Blocks;

namespace ActorCache.Nbd;

/// <summary>What the front serves under one export name: a target and how it may be used.</summary>
public sealed record NbdExport(string Name, string Description, IBlockTarget Target, bool ReadOnly);

/// <summary>The exports a node serves right now. The front only looks names up; it never opens targets itself.</summary>
public interface INbdExportCatalog
{
    /// <summary>Resolves a name; the empty name means the default export.</summary>
    bool TryGet(string name, out NbdExport export);

    IReadOnlyList<NbdExport> List();

    /// <summary>Why an export this server knows is not served right now (e.g. its volume is offline), or null.</summary>
    string? WhyUnavailable(string name) => null;
}
