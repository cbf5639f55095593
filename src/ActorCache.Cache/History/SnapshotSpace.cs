using ActorCache.Blocks;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>What happens when kept snapshots would need more preserved space than <c>snapshot-space</c> allows.</summary>
public enum SnapshotSpacePolicy
{
    /// <summary>The oldest kept snapshot is released (expired), with a warning and a metric; writes go on.</summary>
    ExpireOldest,
    /// <summary>No snapshot is given up: destaging waits, so the log fills and writers wait or fail as log-full-policy says.</summary>
    Protect,
}

/// <summary>
/// Keeps the snapshot store within <see cref="CacheOptions.SnapshotSpace"/> (owned by the destager):
/// before a step preserves blocks it compacts away copies nobody reads, and if that is not enough it
/// applies the policy: expire the oldest kept snapshot (and plan the step's copies again), or refuse
/// the step. Open views of the past are never expired: they are short-lived and their reader relies on them.
/// </summary>
internal sealed class SnapshotSpace(string name, SnapshotStore store, ProtectedPoints points, DestagePlanner planner, CacheHealth health,
    CacheOptions options, ILogger logger, ExpiredPoints expiries, Action<long> expired, Func<long, bool>? pinned = null)
{
    private const int BlockSize = LogFormat.BlockSize;

    public ProtectedPoints Points => points;

    /// <summary>Returns the plan to run: the same, or with fewer blocks to preserve after a snapshot expired.</summary>
    public DestagePlan MakeRoomFor(DestagePlan plan)
    {
        while (plan.Preserve.Count > 0 && store.Length + Needed(plan) > options.SnapshotSpace)
        {
            // Only when some copy is dead: the store's length counts batch headers too, so comparing the live bytes with it rewrote a
            // store whose copies are all read (up to the whole snapshot-space, synced) at every retry of a step under protect.
            if (store.DeadBytes(points) > 0)
            {
                var freed = store.Compact(points, length => planner.SaveStoreLength(length));
                health.CountCompaction(freed);
                logger.LogInformation("volume {Name}: the snapshot store gave back {Bytes} bytes no snapshot reads any more", name, freed);
                if (store.Length + Needed(plan) <= options.SnapshotSpace) break;
            }
            if (options.SnapshotSpacePolicy == SnapshotSpacePolicy.Protect)
                throw new BlockTargetException(BlockError.NoSpace,
                    $"kept snapshots need more than cache.snapshot-space ({options.SnapshotSpace} bytes) and the policy is protect: " +
                    "destaging waits; delete snapshots or raise cache.snapshot-space");
            if (points.OldestKept(pinned) is not { } oldest)
            {
                // Only points someone reads (open views, thin clones) or needs (a thin clone not open now) remain: they go over the limit
                // rather than serve wrong data.
                break;
            }
            // Durable before the step that relies on it writes the backing: the host records it later, and a restart in between must
            // not keep the point again (ExpiredPoints).
            expiries.Record(oldest);
            points.Expire(oldest);
            health.CountExpiry();
            logger.LogWarning("volume {Name}: kept snapshots need more than cache.snapshot-space ({Space} bytes); the oldest, at batch {Sequence}, expired",
                name, options.SnapshotSpace, oldest);
            expired(oldest);
            plan = plan with { Preserve = planner.Preserved(plan.Blocks.Select(b => b.Block)) };
        }
        return plan;
    }

    /// <summary>The store bytes a step's copies take: their blocks and a header per batch of them.</summary>
    private static long Needed(DestagePlan plan) =>
        ((long)plan.Preserve.Count + (plan.Preserve.Count + SnapshotStore.MaxEntries - 1) / SnapshotStore.MaxEntries) * BlockSize;
}
