namespace ActorCache.Cache;

/// <summary>
/// The live index taken at one point in log order, to be persisted (<see cref="PersistedIndex"/>): the
/// region tables frozen as they were, and the logged entries of the batches that finished the writes
/// still queued then. The tables alone are not the log's state: a block still in the ring (or an
/// unlogged trim) hides the version the log has. So the capture completes only at the batch that logs
/// the last write queued when it began; every block those batches logged is in <see cref="Patches"/>,
/// in log order, and frozen tables + patches are exactly the index a replay up to that batch rebuilds.
/// </summary>
/// <remarks>Filled under the append queue's lock; read by whoever persists it once <see cref="Completed"/> has finished.</remarks>
internal sealed class IndexCapture(List<(long Region, ulong[] Table)> tables, long lastTicket, long blocks)
{
    public List<(long Region, ulong[] Table)> Tables { get; } = tables;

    /// <summary>The newest ticket when the capture began: the capture completes with the batch that logs it.</summary>
    public long LastTicket { get; } = lastTicket;

    public long Blocks { get; } = blocks;

    /// <summary>Blocks logged after the tables were frozen, with their logged entries, oldest first.</summary>
    public List<(long Block, ulong Entry)> Patches { get; } = [];

    /// <summary>The header address (in blocks) and end (in blocks) of the last batch the capture covers; header -1 when the log has none.</summary>
    public TaskCompletionSource<(long HeaderBlock, long EndBlock)> Completed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// The index as a replay up to the covered batch rebuilds it: every logged entry at or above
    /// <paramref name="horizon"/> (below it is on the backing). Null if a block that was not logged when
    /// the tables froze was never patched (the capture would not be the log's state).
    /// </summary>
    public List<(long Block, ulong Entry)>? LoggedEntries(long horizon)
    {
        var patched = new Dictionary<long, ulong>(Patches.Count);
        foreach (var (block, entry) in Patches) patched[block] = entry;
        var entries = new List<(long, ulong)>();
        foreach (var (region, table) in Tables)
        {
            foreach (var (block, entry) in BlockIndex.EntriesOf(region, table))
            {
                if (patched.ContainsKey(block)) continue;
                if (!BlockIndex.IsLogged(entry)) return null;
                if (BlockIndex.LogAddressOf(entry) >= horizon) entries.Add((block, entry));
            }
        }
        foreach (var (block, entry) in patched)
            if (BlockIndex.LogAddressOf(entry) >= horizon) entries.Add((block, entry));
        return entries;
    }
}
