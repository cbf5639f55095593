using Microsoft.Extensions.Logging;

namespace ActorCache.Nbd;

/// <summary>
/// The metadata contexts of one handshake: which names LIST_META_CONTEXT offers, what the last
/// SET_META_CONTEXT selected and for which export, and, at GO, the contexts the connection then serves
/// (a dirty bitmap's ranges are computed there, once). Context names are <c>base:allocation</c> and
/// <c>qemu:dirty-bitmap:NAME</c>, NAME being whatever the catalog resolves (a snapshot, a point).
/// </summary>
internal sealed class MetaContextSelection(INbdExportCatalog catalog, ILogger logger)
{
    private string? _export; // the export the last SET selected for; null: nothing selected
    private bool _baseAllocation;
    private readonly List<string> _bitmaps = []; // in selection order: bitmap i has id FirstDirtyBitmapId + i

    /// <summary>A SET replaces the previous selection even when it fails (the spec), so it starts here.</summary>
    public void Clear()
    {
        _export = null;
        _baseAllocation = false;
        _bitmaps.Clear();
    }

    /// <summary>True when a SET names more distinct bitmaps than one connection serves (it is refused as too big).</summary>
    public static bool AsksTooMany(IReadOnlyList<string> queries) =>
        queries.Where(q => q.Length > MetaContexts.DirtyBitmapPrefix.Length && q.StartsWith(MetaContexts.DirtyBitmapPrefix, StringComparison.Ordinal))
            .Distinct(StringComparer.Ordinal).Count() > MetaContexts.MaxDirtyBitmaps;

    /// <summary>
    /// LIST_META_CONTEXT: the context names that match <paramref name="queries"/> on the opened export. No
    /// query, <c>qemu:</c> or <c>qemu:dirty-bitmap:</c> list the bitmaps the catalog offers (kept
    /// snapshots); a bitmap named in full is listed when it can be served now.
    /// </summary>
    public async Task<IReadOnlyList<string>> ListAsync(NbdExport export, IReadOnlyList<string> queries, CancellationToken ct)
    {
        var all = queries.Count == 0;
        var names = new List<string>();
        if (all || queries.Any(q => q is "base:" or MetaContexts.BaseAllocation)) names.Add(MetaContexts.BaseAllocation);
        if (all || queries.Any(q => q is "qemu:" or MetaContexts.DirtyBitmapPrefix))
            names.AddRange(catalog.DirtyBitmaps(export).Select(b => MetaContexts.DirtyBitmapPrefix + b));
        foreach (var query in queries.Distinct(StringComparer.Ordinal))
        {
            if (BitmapOf(query) is { } bitmap)
            {
                if (await DirtyRangesOrWhyNotAsync(export, bitmap, ct) is not null) names.Add(query);
            }
            else if (query is not ("base:" or MetaContexts.BaseAllocation or "qemu:" or MetaContexts.DirtyBitmapPrefix)) Ignored(export, query);
        }
        return [.. names.Distinct(StringComparer.Ordinal)];
    }

    /// <summary>
    /// SET_META_CONTEXT: selects the contexts of <paramref name="queries"/> that the opened export serves
    /// and returns them with their ids; the others are ignored, as the spec asks, and logged with why.
    /// </summary>
    public async Task<IReadOnlyList<(uint Id, string Name)>> SelectAsync(NbdExport export, IReadOnlyList<string> queries, CancellationToken ct)
    {
        Clear();
        foreach (var query in queries.Distinct(StringComparer.Ordinal))
        {
            if (query == MetaContexts.BaseAllocation) _baseAllocation = true;
            else if (BitmapOf(query) is { } bitmap)
            {
                // Asked now only to know whether it exists: the ranges served are those computed at GO.
                if (await DirtyRangesOrWhyNotAsync(export, bitmap, ct) is not null) _bitmaps.Add(bitmap);
            }
            else Ignored(export, query);
        }
        if (_baseAllocation || _bitmaps.Count > 0) _export = export.Name;
        var selected = new List<(uint, string)>();
        if (_baseAllocation) selected.Add((MetaContexts.BaseAllocationId, MetaContexts.BaseAllocation));
        for (var i = 0; i < _bitmaps.Count; i++)
            selected.Add((MetaContexts.FirstDirtyBitmapId + (uint)i, MetaContexts.DirtyBitmapPrefix + _bitmaps[i]));
        return selected;
    }

    /// <summary>
    /// GO or EXPORT_NAME: what the connection to <paramref name="export"/> serves. Nothing unless the last
    /// SET was for this export (and structured replies were negotiated). Each bitmap's ranges are computed
    /// here, as of now, and held for the connection; one that cannot be any more fails the attach
    /// (<see cref="NbdProtocolException"/>): its id was promised to the client.
    /// </summary>
    public async Task<(bool BaseAllocation, DirtyBitmap[] Bitmaps)> ServeAsync(NbdExport export, bool structured, CancellationToken ct)
    {
        if (!structured || _export != export.Name) return (false, []);
        var bitmaps = new DirtyBitmap[_bitmaps.Count];
        for (var i = 0; i < bitmaps.Length; i++)
        {
            var ranges = await catalog.DirtyRangesAsync(export, _bitmaps[i], ct)
                         ?? throw new NbdProtocolException($"dirty bitmap '{_bitmaps[i]}' of export '{export.Name}' is gone since it was selected");
            bitmaps[i] = new DirtyBitmap(_bitmaps[i], MetaContexts.FirstDirtyBitmapId + (uint)i, ranges);
            logger.LogInformation("NBD dirty bitmap {Bitmap} of {Export}: {Ranges} changed ranges, {Bytes} bytes",
                _bitmaps[i], export.Name, bitmaps[i].RangeCount, ranges.Sum(r => r.Length));
        }
        return (_baseAllocation, bitmaps);
    }

    /// <summary>The NAME of <c>qemu:dirty-bitmap:NAME</c>, or null for any other query (and for the empty name, a LIST wildcard).</summary>
    private static string? BitmapOf(string query) =>
        query.Length > MetaContexts.DirtyBitmapPrefix.Length && query.StartsWith(MetaContexts.DirtyBitmapPrefix, StringComparison.Ordinal)
            ? query[MetaContexts.DirtyBitmapPrefix.Length..]
            : null;

    /// <summary>The bitmap's ranges, or null when the export has none of that name (logged with the reason: clients only see it missing).</summary>
    private async Task<IReadOnlyList<(long Offset, long Length)>?> DirtyRangesOrWhyNotAsync(NbdExport export, string bitmap, CancellationToken ct)
    {
        string why;
        try
        {
            if (await catalog.DirtyRangesAsync(export, bitmap, ct) is { } ranges) return ranges;
            why = "the export has no such bitmap";
        }
        catch (NbdProtocolException e)
        {
            why = e.Message;
        }
        logger.LogInformation("NBD client asked for {Context} on export {Export}, which is not selected: {Reason}",
            MetaContexts.DirtyBitmapPrefix + bitmap, export.Name, why);
        return null;
    }

    private void Ignored(NbdExport export, string query) =>
        logger.LogDebug("NBD client asked for metadata context '{Query}' on export {Export}, which names no context this server serves", query, export.Name);
}
