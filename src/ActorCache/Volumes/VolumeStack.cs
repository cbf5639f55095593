using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Hosting;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace ActorCache.Volumes;

/// <summary>Builds a volume's target stack from its definition: backing, then (unless pass-through) the write-back cache, then the volume layer.</summary>
public static class VolumeStack
{
    public static CacheMode CacheModeOf(VolumeMode mode) => mode switch
    {
        VolumeMode.WriteThrough => CacheMode.WriteThrough,
        VolumeMode.PassThrough => CacheMode.PassThrough,
        _ => CacheMode.WriteBack,
    };

    /// <summary>Whether the volume has (or gets) a log: a read-only volume never writes, and a pass-through volume that never had a log needs none.</summary>
    public static bool HasLog(VolumeDefinition definition, CacheSettings settings) =>
        !definition.ReadOnly && (definition.Mode != VolumeMode.PassThrough || Directory.Exists(settings.OptionsFor(definition.Name).LogDirectory));

    /// <param name="kept">The batch sequences of the volume's kept snapshots: protected from the start.</param>
    /// <param name="expired">Told the batch sequence of a kept point the cache gave up to stay within snapshot-space.</param>
    /// <param name="pinned">Whether a kept point is needed by a clone that is not open now (never expired for snapshot-space).</param>
    public static async Task<Volume> OpenAsync(VolumeDefinition definition, CacheSettings settings, RingBuffer ring, ILoggerFactory loggers,
        IActorRefFactory actors, IReadOnlyList<long>? kept = null, Action<long>? expired = null,
        Func<CloneOrigin, Task<IBlockTarget>>? openOrigin = null, IProgress<(long Done, long Total)>? recovery = null, Func<long, bool>? pinned = null)
    {
        var logger = loggers.CreateLogger("ActorCache.Volume." + definition.Name);
        IBlockTarget backing = definition.Origin is { } origin ? await OpenCloneAsync(definition, origin, openOrigin) : OpenBacking(definition);
        if (settings.BackingWriteDelay > TimeSpan.Zero) backing = new DelayedTarget(backing, settings.BackingWriteDelay);
        var options = settings.OptionsFor(definition.Name);
        if (kept is { Count: > 0 } && definition.Mode != VolumeMode.WriteBack)
        {
            await backing.DisposeAsync();
            BlockThrow.Error(BlockError.InvalidRequest, $"it has {kept.Count} kept snapshot(s), which need write-back (in {VolumeSpec.FormatMode(definition.Mode)} " +
                                                        "writes would overwrite what they read); serve it write-back, or delete its snapshots first");
        }
        if (!HasLog(definition, settings)) return new Volume(definition, backing);

        var lastReport = -1L;
        var started = DateTime.UtcNow;
        var progress = new SynchronousProgress<(long Done, long Total)>(p =>
        {
            recovery?.Report(p);
            if (p.Total <= 0) return;
            var percent = p.Done * 100 / p.Total / 10 * 10;
            if (percent == lastReport) return;
            lastReport = percent;
            var elapsed = (DateTime.UtcNow - started).TotalSeconds;
            logger.LogInformation("volume {Name}: recovering the log, {Percent}% ({Done} of {Total} bytes), {Left}", definition.Name, percent, p.Done, p.Total,
                p.Done <= 0 ? "time left unknown yet" : $"about {Math.Ceiling(elapsed * (p.Total - p.Done) / p.Done):0} s left");
        });
        WriteBackCache cache;
        try
        {
            cache = WriteBackCache.Open(definition.Name, backing, ring, options, CacheModeOf(definition.Mode), logger, actors, progress, kept: kept, pinned: pinned);
            if (expired is not null)
            {
                cache.PointExpired += expired;
                foreach (var sequence in cache.ExpiredAtOpen) expired(sequence);
            }
        }
        catch
        {
            await backing.DisposeAsync();
            throw;
        }
        if (definition.Mode != VolumeMode.WriteBack && cache.Index.CachedBlocks > 0 && cache.ReadOnlyReason is null)
        {
            // History left from write-back mode goes to the backing before writes bypass the cache.
            logger.LogInformation("volume {Name}: draining {Blocks} cached blocks before serving {Mode}", definition.Name,
                cache.Index.CachedBlocks, VolumeSpec.FormatMode(definition.Mode));
            try
            {
                await cache.DrainAsync();
            }
            catch
            {
                await cache.DisposeAsync(); // and its backing (a clone's view of its snapshot with it)
                throw;
            }
        }
        return new Volume(definition, cache);
    }

    /// <summary>
    /// The backing of a volume that exists: it must be there and hold the whole volume. A missing or
    /// shorter one (deleted, or replaced by an empty file) is refused rather than recreated or extended
    /// with zeroes, which would serve the volume's data as zeroes without a word.
    /// </summary>
    private static FileBacking OpenBacking(VolumeDefinition definition)
    {
        var path = definition.BackingPath;
        if (Directory.Exists(path))
            BlockThrow.Error(BlockError.InvalidRequest, $"its backing {path} is a directory, not the volume's file; put the backing file back and restart the node");
        if (!File.Exists(path))
            BlockThrow.Error(BlockError.InvalidRequest,
                $"its backing {path} is missing (it was there when the volume was defined); restore the file (at least {ByteSize.Format(definition.Size)}) and restart the node");
        return FileBacking.Open(path, definition.Size, create: false, definition.ReadOnly, extend: false);
    }

    /// <summary>A clone's backing: its own file over a view of its snapshot, unless it is independent already.</summary>
    private static async Task<IBlockTarget> OpenCloneAsync(VolumeDefinition definition, CloneOrigin origin, Func<CloneOrigin, Task<IBlockTarget>>? openOrigin)
    {
        var own = OpenBacking(definition);
        IBlockTarget? view = null;
        try
        {
            if (!CloneBacking.IsIndependent(definition.CloneMapPath))
                view = openOrigin is null
                    ? throw new BlockTargetException(BlockError.InvalidRequest, $"it is a clone of {origin} and nothing can open that snapshot here")
                    : await openOrigin(origin);
            return CloneBacking.Open(own, view, definition.CloneMapPath);
        }
        catch
        {
            if (view is not null) await view.DisposeAsync();
            await own.DisposeAsync();
            throw;
        }
    }

    /// <summary>Reports on the caller's thread (Progress&lt;T&gt; would post to the thread pool and report out of order).</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
