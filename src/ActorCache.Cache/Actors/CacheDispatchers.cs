namespace ActorCache.Cache.Actors;

/// <summary>
/// Where the cache's actors run. The flusher and destager do blocking log and backing I/O (pwritev,
/// fdatasync), so each gets a thread of its own rather than starving the pool that serves NBD
/// requests. The dispatcher is defined in the reference configuration (<c>actorcache.cache.log-dispatcher</c>),
/// which a node's configuration always includes; an ActorSystem set up without it (tests, benchmarks)
/// takes <see cref="Hocon"/>.
/// </summary>
public static class CacheDispatchers
{
    public const string Log = "actorcache.cache.log-dispatcher";

    /// <summary>The reference configuration, which defines the dispatcher.</summary>
    public static string Hocon => CacheReference.Text;
}
