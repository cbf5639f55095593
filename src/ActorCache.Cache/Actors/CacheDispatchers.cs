namespace ActorCache.Cache.Actors;

/// <summary>
/// Where the cache's actors run. The flusher and destager do blocking log and backing I/O (pwritev,
/// fdatasync), so each gets a thread of its own rather than starving the pool that serves NBD
/// requests. Extent actors run on the sender's thread when idle
/// (<see cref="CallingThreadDispatcher"/>): their handlers are a few index updates, and a write
/// should not pay a thread switch for them; their backing writes go to the thread pool.
/// Every ActorSystem that hosts caches includes <see cref="Hocon"/>.
/// </summary>
public static class CacheDispatchers
{
    public const string Log = "actorcache.cache.log-dispatcher";
    public const string Extents = "actorcache.cache.extent-dispatcher";

    public const string Hocon = """
        actorcache.cache.log-dispatcher {
          type = PinnedDispatcher
        }
        actorcache.cache.extent-dispatcher {
          type = "ActorCache.Cache.Actors.CallingThreadDispatcherConfigurator, ActorCache.Cache"
          throughput = 1000000
        }
        """;
}
