using System.Buffers;
using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Volumes;
using Microsoft.Extensions.Logging;

namespace ActorCache.Snapshots;

/// <summary>What a revert will do: the volume, the point it goes back to, the snapshot that keeps the state it leaves, the bytes to rewrite.</summary>
public sealed record RevertPlan(string Volume, SyncPoint To, string Undo, IReadOnlyList<ChangedRange> Ranges, GenerationView Past)
{
    public long Bytes => Ranges.Sum(r => r.Length);
}

/// <summary>
/// Brings a live volume back to a point of its history, online (DESIGN §3 "Snapshots"): the state it
/// leaves is kept first as snapshot <c>pre-revert-GENERATION</c>, then every range that may differ
/// since the point is read from a view of the past and written to the volume through its own stack,
/// as new history, then flushed. Connected clients read the old content on their next read. Blocks
/// that read as zeroes are written as zeroes (a hole where the backing can punch one).
/// </summary>
public sealed class VolumeRevert(SnapshotService snapshots, ExportCatalog exports, ILogger<VolumeRevert> logger)
{
    private const int ChunkBytes = 1 << 20;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _running = new(StringComparer.Ordinal);

    /// <summary>Plans and runs a revert, one per volume at a time (two would interleave their writes into a mix of both points).</summary>
    public async Task<RevertPlan> PlanExclusiveAsync(string volume, PointQuery to, CancellationToken ct)
    {
        if (!_running.TryAdd(volume, true)) throw new SnapshotRefusedException($"volume {volume} is being reverted already; wait for that revert to finish");
        try
        {
            return await PlanAsync(volume, to, ct);
        }
        catch
        {
            _running.TryRemove(volume, out _);
            throw;
        }
    }

    /// <summary>Checks the request and keeps the current state; the copy itself is <see cref="RunAsync"/>.</summary>
    public async Task<RevertPlan> PlanAsync(string volume, PointQuery to, CancellationToken ct)
    {
        if (!exports.TryGetVolume(volume, out var export))
            throw exports.WhyUnavailable(volume) is { } offline ? new SnapshotRefusedException(offline) : new VolumeNotFoundException(volume);
        if (export.ReadOnly) throw new SnapshotRefusedException($"volume {volume} is read-only; a revert writes to it");
        // A replica that is not the primary takes no writes: refused before the undo snapshot is kept, not with EIO at the first write.
        if (export.Target is Volume { Guard.NotPrimaryReason: { } notPrimary })
            throw new SnapshotRefusedException($"volume {volume} takes no writes on this node, so it cannot be reverted here: {notPrimary}");
        var target = export.Target;
        var open = new OpenPastView(to);
        try
        {
            if (!await target.TrySendAsync(open, ct)) throw new SnapshotRefusedException($"volume {volume} keeps no history (pass-through volumes have no log)");
        }
        catch (BlockTargetException e)
        {
            throw new SnapshotRefusedException(e.Message);
        }
        var past = open.Result!;
        try
        {
            // The state being left, kept under a name that says where it came from (a FLUSH closes its generation first).
            await target.FlushAsync(ct);
            var history = await snapshots.HistoryAsync(volume, ct);
            if (history.Count == 0) throw new SnapshotRefusedException($"volume {volume} has no restorable point for its current state to keep; write and flush, then revert");
            var now = history[^1];
            var undo = await KeepCurrentAsync(volume, now.Point, ct);
            var diff = new DiffPoints(PointQuery.Known(past.Point), null);
            await target.TrySendAsync(diff, ct);
            return new RevertPlan(volume, past.Point, undo, diff.Result!, past);
        }
        catch
        {
            await past.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Keeps the state being left as <c>pre-revert-GENERATION</c>: an existing snapshot of that name at
    /// that point is it already; one at another point (or expired) gets a suffix, so the undo always
    /// names exactly the state left.
    /// </summary>
    private async Task<string> KeepCurrentAsync(string volume, SyncPoint now, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var name = attempt == 1 ? $"pre-revert-{now.Generation}" : $"pre-revert-{now.Generation}-{attempt}";
            var existing = snapshots.List(volume).FirstOrDefault(s => s.Name == name);
            if (existing is null)
            {
                await snapshots.CreateAsync(volume, name, PointQuery.Known(now), ct);
                return name;
            }
            if (existing.Sequence == now.Sequence && existing.Expired is null) return name;
        }
    }

    /// <summary>Rewrites the plan's ranges from the past, reporting bytes done, then flushes; closes the view of the past at the end.</summary>
    public async Task RunAsync(RevertPlan plan, Action<long> progress, CancellationToken ct)
    {
        try
        {
            await RewriteAsync(plan, progress, ct);
        }
        finally
        {
            _running.TryRemove(plan.Volume, out _);
        }
    }

    private async Task RewriteAsync(RevertPlan plan, Action<long> progress, CancellationToken ct)
    {
        await using var past = plan.Past;
        if (!exports.TryGetVolume(plan.Volume, out var export)) throw new SnapshotRefusedException($"volume {plan.Volume} went away during the revert");
        var volume = export.Target;
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            long done = 0;
            foreach (var range in plan.Ranges)
            {
                for (var offset = range.Offset; offset < range.Offset + range.Length;)
                {
                    var length = (int)Math.Min(ChunkBytes, range.Offset + range.Length - offset);
                    var chunk = buffer.AsMemory(0, length);
                    await past.ReadAsync(offset, chunk, ct);
                    if (chunk.Span.IndexOfAnyExcept((byte)0) < 0)
                        await volume.WriteZeroesAsync(offset, length, mayDeallocate: true, fastOnly: false, fua: false, ct);
                    else
                        await volume.WriteAsync(offset, chunk, fua: false, ct);
                    offset += length;
                    done += length;
                    progress(done);
                }
            }
            await volume.FlushAsync(ct);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        logger.LogInformation("volume {Volume} reverted to generation {Generation} ({Time:yyyy-MM-ddTHH:mm:ss.fffZ}): {Bytes} bytes rewritten; undo with " +
                              "'actorcache volume revert {Volume} --to {Undo}'", plan.Volume, plan.To.Generation, plan.To.Time, plan.Bytes, plan.Volume, plan.Undo);
    }
}
