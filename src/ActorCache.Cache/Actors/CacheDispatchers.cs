namespace ActorCache.Cache.Actors;

/// <summary>
/// Where the cache's actors run. The flusher and destager do blocking log and backing I/O (pwritev,
/// fdatasync), so each gets a thread of its own rather than starving the pool that serves NBD
/// requests. Every ActorSystem that hosts caches includes <see cref="Hocon"/>.
/// </summary>
public static class CacheDispatchers
{
    public const string Log = "actorcache.cache.log-dispatcher";

    public const string Hocon = """
        actorcache.cache.log-dispatcher {
          type = PinnedDispatcher
        }
        """;
}
