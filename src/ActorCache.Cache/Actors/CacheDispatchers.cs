namespace ActorCache.Cache.Actors;

/// <summary>
/// Where the cache's actors run. The flusher and destager do blocking log and backing I/O (pwritev,
/// fdatasync), so each gets a thread of its own rather than starving the pool that serves NBD
/// requests; extent actors write their regions to the backing on a small dedicated pool.
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
          type = ForkJoinDispatcher
          throughput = 16
          dedicated-thread-pool {
            thread-count = 2
            threadtype = background
          }
        }
        """;
}
