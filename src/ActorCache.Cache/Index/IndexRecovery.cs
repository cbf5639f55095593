using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// Rebuilds a volume's index when it opens: from the persisted index and the log written after it when
/// that index is sound and covers enough history to be worth it, else by replaying the whole log from
/// the checkpoint (<see cref="LogRecovery"/>). Either way the log after the starting point is replayed
/// with every checksum verified, and the result is the index a full replay would build.
/// </summary>
public static class IndexRecovery
{
    public static RecoveryResult Recover(string name, ILogMedium medium, ILogDirectory directory, Checkpoint checkpoint, BlockIndex index,
        CacheOptions options, ILogger logger, IProgress<(long Done, long Total)>? progress = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var persisted = PersistedIndex.TryLoad(directory, checkpoint.VolumeId, out var problem);
        // The index is saved only once the log is durable through the batch it was taken at: that batch and every one before it
        // were complete, so a bad one among them is corruption, never a torn tail (the last records before a clean close have no
        // later record to vouch for them). Known even when the index itself is not used.
        var durableThrough = 0L;
        if (persisted is not null)
        {
            var holdsItsBatch = persisted.NextAddress > checkpoint.Horizon && PersistedIndex.HeaderBlockCrc(medium, persisted.BatchAddress) == persisted.BatchHeaderCrc;
            if (holdsItsBatch) durableThrough = persisted.BatchSequence;
            if (persisted.NextAddress <= checkpoint.Horizon || persisted.NextAddress - checkpoint.Horizon < options.FullReplayBelow)
                persisted = null; // the horizon reached it (the checkpoint says it all), or it covers little: replaying it all also verifies it all
            else if (!holdsItsBatch)
            {
                problem = $"the persisted index is stale: the log no longer holds batch {persisted.BatchSequence} at address {persisted.BatchAddress} that it was taken at";
                persisted = null;
            }
        }
        if (problem is not null) logger.LogWarning("volume {Name}: {Problem}; replaying the whole log from the checkpoint instead", name, problem);
        if (persisted is null) return LogRecovery.Replay(medium, checkpoint, index, options.MaxBatchBlocks, progress, durableThrough: durableThrough);

        // Entries below the horizon were destaged after the index was saved: the backing has them.
        bool Wanted((long Block, ulong Entry) e) => e.Block < index.Blocks && BlockIndex.LogAddressOf(e.Entry) >= checkpoint.Horizon;
        var perRegion = new Dictionary<long, int>();
        foreach (var e in persisted.Entries)
            if (Wanted(e)) CollectionsMarshal.GetValueRefOrAddDefault(perRegion, e.Block >> BlockIndex.RegionShift, out _)++;
        foreach (var (region, count) in perRegion) index.Reserve(region << BlockIndex.RegionShift, count);
        long loaded = 0;
        foreach (var e in persisted.Entries)
        {
            if (!Wanted(e)) continue;
            index.Set(e.Block, e.Entry);
            loaded++;
        }
        var loadedIn = clock.Elapsed.TotalSeconds;
        var resume = checkpoint with { Horizon = persisted.NextAddress, Sequence = persisted.BatchSequence + 1, Generation = persisted.GenerationAfter };
        var start = new ReplayStart([.. persisted.SyncPoints.Where(p => p.Sequence >= checkpoint.Sequence)], persisted.TimeMicros,
            persisted.BatchAddress, persisted.NextAddress);
        var result = LogRecovery.Replay(medium, resume, index, options.MaxBatchBlocks, progress, start, durableThrough);
        logger.LogInformation("volume {Name}: read the persisted index in {Loaded:F2}s ({Entries} entries covering {Bytes} bytes of log); replayed the {Tail} bytes after it in {Replayed:F2}s",
            name, loadedIn, loaded, persisted.NextAddress - checkpoint.Horizon, result.BytesReplayed, clock.Elapsed.TotalSeconds - loadedIn);
        return result with { PersistedEntries = loaded, SkippedBytes = persisted.NextAddress - checkpoint.Horizon };
    }
}
