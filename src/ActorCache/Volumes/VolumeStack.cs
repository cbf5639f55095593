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

    public static Volume Open(VolumeDefinition definition, CacheSettings settings, RingBuffer ring, ILoggerFactory loggers, IActorRefFactory actors)
    {
        var logger = loggers.CreateLogger("ActorCache.Volume." + definition.Name);
        IBlockTarget backing = FileBacking.Open(definition.BackingPath, definition.Size, create: false, definition.ReadOnly);
        if (settings.BackingWriteDelay > TimeSpan.Zero) backing = new DelayedTarget(backing, settings.BackingWriteDelay);
        var options = settings.OptionsFor(definition.Name);
        // A read-only volume never writes, and a pass-through volume that never had a log needs none.
        if (definition.ReadOnly || (definition.Mode == VolumeMode.PassThrough && !Directory.Exists(options.LogDirectory)))
            return new Volume(definition, backing, cache: null);

        var lastReport = -1L;
        var progress = new SynchronousProgress<(long Done, long Total)>(p =>
        {
            if (p.Total <= 0) return;
            var percent = p.Done * 100 / p.Total / 10 * 10;
            if (percent == lastReport) return;
            lastReport = percent;
            logger.LogInformation("volume {Name}: recovering the log, {Percent}% ({Done} of {Total} bytes)", definition.Name, percent, p.Done, p.Total);
        });
        WriteBackCache cache;
        try
        {
            cache = WriteBackCache.Open(definition.Name, backing, ring, options, CacheModeOf(definition.Mode), logger, actors, progress);
        }
        catch
        {
            backing.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
        if (definition.Mode != VolumeMode.WriteBack && cache.Index.CachedBlocks > 0 && cache.ReadOnlyReason is null)
        {
            // History left from write-back mode goes to the backing before writes bypass the cache.
            logger.LogInformation("volume {Name}: draining {Blocks} cached blocks before serving {Mode}", definition.Name,
                cache.Index.CachedBlocks, VolumeSpec.FormatMode(definition.Mode));
            cache.DrainAsync().GetAwaiter().GetResult();
        }
        return new Volume(definition, cache, cache);
    }

    /// <summary>Reports on the caller's thread (Progress&lt;T&gt; would post to the thread pool and report out of order).</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
