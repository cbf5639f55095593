using ActorCache.Blocks;

namespace ActorCache.Nbd;

/// <summary>
/// What the front serves under one export name: a target and how it may be used. An export opened for
/// one client (a view of the past) carries a <see cref="Lease"/> that the front releases when that
/// client is done with it.
/// </summary>
public sealed record NbdExport(string Name, string Description, IBlockTarget Target, bool ReadOnly)
{
    public IAsyncDisposable? Lease { get; init; }

    /// <summary>Lets go of an export opened for one client; nothing for a shared one.</summary>
    public ValueTask ReleaseAsync() => Lease?.DisposeAsync() ?? ValueTask.CompletedTask;
}

/// <summary>The exports a node serves right now. The front only looks names up; it never opens targets itself.</summary>
public interface INbdExportCatalog
{
    /// <summary>Resolves a name; the empty name means the default export.</summary>
    bool TryGet(string name, out NbdExport export);

    /// <summary>
    /// Resolves a name for one client, which may open something for it (a view of the past): null when
    /// there is no such export; throws <see cref="NbdProtocolException"/> with a reason the client is told
    /// when the name is known but cannot be served. The caller releases what it gets.
    /// </summary>
    ValueTask<NbdExport?> OpenAsync(string name, CancellationToken cancellationToken) =>
        ValueTask.FromResult(TryGet(name, out var export) ? export : null);

    IReadOnlyList<NbdExport> List();

    /// <summary>Why an export this server knows is not served right now (e.g. its volume is offline), or null.</summary>
    string? WhyUnavailable(string name) => null;

    /// <summary>
    /// The byte ranges of an opened <paramref name="export"/> that may differ from the point
    /// <paramref name="bitmap"/> names (the <c>NAME</c> of <c>qemu:dirty-bitmap:NAME</c>), in offset order,
    /// with no false negatives: null when the export has no such bitmap; throws
    /// <see cref="NbdProtocolException"/> with the reason when the name is known but cannot be served
    /// (a point the history no longer covers, one newer than the export). May take a while: the front
    /// asks once per connection, when the client attaches, and holds the answer.
    /// </summary>
    ValueTask<IReadOnlyList<(long Offset, long Length)>?> DirtyRangesAsync(NbdExport export, string bitmap, CancellationToken cancellationToken) =>
        ValueTask.FromResult<IReadOnlyList<(long Offset, long Length)>?>(null);

    /// <summary>
    /// The dirty bitmaps to list for an opened export when a client asks which there are (other names may
    /// still be selectable, such as points in time): their names, without <c>qemu:dirty-bitmap:</c>.
    /// </summary>
    IReadOnlyList<string> DirtyBitmaps(NbdExport export) => [];
}
