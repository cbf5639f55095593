using ActorCache.Blocks;
using Akka.Configuration;

namespace ActorCache.Cache;

/// <summary>
/// The reference configuration (<c>hocon/actorcache.conf</c>, embedded in this assembly): the one place
/// every cache default lives. <see cref="CacheOptions"/> takes its defaults from here, and so does the
/// node, which reads the same file with the user's overrides on top.
/// </summary>
public static class CacheReference
{
    private static readonly Lazy<string> TextOnce = new(() =>
    {
        using var stream = typeof(CacheReference).Assembly.GetManifestResourceStream("actorcache.conf")
                           ?? throw new InvalidOperationException("the reference configuration is not embedded in ActorCache.Cache");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    private static readonly Lazy<Config> CacheOnce = new(() => ConfigurationFactory.ParseString(Text).GetConfig("actorcache.cache"));

    /// <summary>The whole reference file (it also defines the cache's dispatcher).</summary>
    public static string Text => TextOnce.Value;

    /// <summary>The <c>actorcache.cache</c> section of the reference.</summary>
    public static Config Cache => CacheOnce.Value;

    internal static long Size(string key) =>
        ByteSize.TryParse(Cache.GetString(key), out var bytes, out var error) ? bytes : throw new InvalidOperationException($"reference actorcache.cache.{key}: {error}");

    internal static TimeSpan Duration(string key) => Cache.GetTimeSpan(key);

    internal static double Double(string key) => Cache.GetDouble(key);

    internal static SnapshotSpacePolicy SpacePolicy(string key) => Cache.GetString(key) == "protect" ? SnapshotSpacePolicy.Protect : SnapshotSpacePolicy.ExpireOldest;

    internal static LogFullPolicy Policy(string key) => Cache.GetString(key) == "fail" ? LogFullPolicy.Fail : LogFullPolicy.Wait;
}
