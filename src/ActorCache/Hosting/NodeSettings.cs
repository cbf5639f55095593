using ActorCache.Admin;
using ActorCache.Blocks;
using ActorCache.Nbd;
using ActorCache.Volumes;
using Akka.Configuration;

namespace ActorCache.Hosting;

public enum MetadataProvider { Sqlite, PostgreSql }

/// <summary>Everything a node needs to start, read from HOCON (defaults, --config, --set) and flags, and checked.</summary>
public sealed record NodeSettings
{
    public required string DataDir { get; init; }
    public required IReadOnlyList<VolumeSpec> Volumes { get; init; }
    public required VolumeSpec DefaultVolume { get; init; }
    public required NbdServerOptions Nbd { get; init; }
    public required string DefaultExport { get; init; }
    public required TimeSpan StopGrace { get; init; }
    public required MetadataProvider Metadata { get; init; }
    public required string MetadataConnectionString { get; init; }
    public required string ClusterHostname { get; init; }
    public required int ClusterPort { get; init; }
    public required IReadOnlyList<string> SeedNodes { get; init; }
    public required CacheSettings Cache { get; init; }
    /// <summary>Where the admin HTTP listener (/metrics, /health) binds.</summary>
    public required AdminListenAddress Admin { get; init; }
    /// <summary>The merged configuration, handed to Akka so its own settings can be overridden the same way.</summary>
    public required Config Config { get; init; }
}

/// <summary>The node's cache settings (actorcache.cache): the shared ring and the per-volume log.</summary>
public sealed record CacheSettings(
    long RingSize, string LogDir, long SegmentSize, long LogCapacity, TimeSpan RetentionTime, double RetentionMaxFraction,
    long MaxBatch, TimeSpan DestageInterval, ActorCache.Cache.LogFullPolicy LogFullPolicy, TimeSpan RingWaitTimeout, TimeSpan BackingWriteDelay,
    TimeSpan ExtentIdleTimeout)
{
    public ActorCache.Cache.CacheOptions OptionsFor(string volume) => new()
    {
        LogDirectory = Path.Combine(LogDir, volume),
        SegmentSize = SegmentSize,
        LogCapacity = LogCapacity,
        RetentionTime = RetentionTime,
        RetentionMaxFraction = RetentionMaxFraction,
        MaxBatchBlocks = (int)(MaxBatch / 4096),
        DestageInterval = DestageInterval,
        LogFullPolicy = LogFullPolicy,
        RingWaitTimeout = RingWaitTimeout,
        ExtentIdleTimeout = ExtentIdleTimeout,
    };
}

/// <summary>The flags of <c>actorcache serve</c> that override configuration.</summary>
public sealed record ServeFlags(string? ConfigFile, string? DataDir, IReadOnlyList<string> Listen, IReadOnlyList<string> Volumes,
    IReadOnlyList<string> Sets, string? Admin = null);

/// <summary>Raised for settings a user got wrong; the message says which and how to fix it.</summary>
public sealed class SettingsException(string message) : Exception(message);

public static class NodeSettingsLoader
{
    /// <summary>The reference file shipped next to the binary.</summary>
    public static string ReferencePath => Path.Combine(AppContext.BaseDirectory, "hocon", "actorcache.conf");

    public static NodeSettings Load(ServeFlags flags)
    {
        var config = ConfigurationFactory.ParseString(File.ReadAllText(ReferencePath));
        if (flags.ConfigFile is not null)
        {
            if (!File.Exists(flags.ConfigFile)) throw new SettingsException($"config file {flags.ConfigFile} does not exist");
            try
            {
                config = ConfigurationFactory.ParseString(File.ReadAllText(flags.ConfigFile)).WithFallback(config);
            }
            catch (Exception e) when (e is not SettingsException)
            {
                throw new SettingsException($"config file {flags.ConfigFile} is not valid HOCON: {e.Message}");
            }
        }
        foreach (var set in flags.Sets)
        {
            var eq = set.IndexOf('=');
            if (eq <= 0) throw new SettingsException($"--set '{set}' must look like key=value, e.g. --set actorcache.nbd.stop-grace=10s");
            try
            {
                config = ConfigurationFactory.ParseString($"{set[..eq].Trim()} = {set[(eq + 1)..].Trim()}").WithFallback(config);
            }
            catch (Exception e)
            {
                throw new SettingsException($"--set '{set}' is not valid HOCON: {e.Message}");
            }
        }
        return FromConfig(config, flags);
    }

    private static NodeSettings FromConfig(Config config, ServeFlags flags)
    {
        var ac = config.GetConfig("actorcache");
        var dataDir = Path.GetFullPath(flags.DataDir ?? ac.GetString("data-dir", "./data"));

        var volumes = new List<VolumeSpec>();
        foreach (var text in ac.GetStringList("volumes").Concat(flags.Volumes))
        {
            if (!VolumeSpec.TryParse(text, out var spec, out var error)) throw new SettingsException(error);
            if (volumes.Any(v => v.Name == spec!.Name))
                throw new SettingsException($"volume {spec!.Name} is given twice; each volume name may appear once");
            volumes.Add(spec!);
        }
        if (!VolumeSpec.TryParse(ac.GetString("default-volume"), out var defaultVolume, out var defaultError))
            throw new SettingsException($"actorcache.default-volume: {defaultError}");

        IReadOnlyList<string> listenTexts = flags.Listen.Count > 0 ? flags.Listen : [.. ac.GetStringList("nbd.listen")];
        if (listenTexts.Count == 0) listenTexts = ["tcp://127.0.0.1:10809", $"unix:{Path.Combine(dataDir, "nbd.sock")}"];
        var listen = new List<NbdListenAddress>();
        foreach (var text in listenTexts)
        {
            if (!NbdListenAddress.TryParse(text, out var address, out var error)) throw new SettingsException(error);
            listen.Add(address!);
        }

        var adminText = flags.Admin ?? ac.GetString("admin.listen", AdminListenAddress.Default);
        if (!AdminListenAddress.TryParse(adminText, out var admin, out var adminError))
            throw new SettingsException($"{(flags.Admin is null ? "actorcache.admin.listen" : "--admin")}: {adminError}");

        var provider = ac.GetString("metadata.provider", "sqlite") switch
        {
            "sqlite" => MetadataProvider.Sqlite,
            "postgresql" or "postgres" => MetadataProvider.PostgreSql,
            var other => throw new SettingsException($"actorcache.metadata.provider '{other}' is unknown; use sqlite or postgresql"),
        };
        var connectionString = ac.GetString("metadata.connection-string", "");
        if (provider == MetadataProvider.PostgreSql && string.IsNullOrWhiteSpace(connectionString))
            throw new SettingsException("actorcache.metadata.provider is postgresql but actorcache.metadata.connection-string is empty");
        if (provider == MetadataProvider.Sqlite && connectionString.Length == 0)
            connectionString = $"Data Source={Path.Combine(dataDir, "metadata.db")}";

        var maxInFlight = ac.GetInt("nbd.max-in-flight-per-connection", 64);
        if (maxInFlight is < 1 or > 4096)
            throw new SettingsException($"actorcache.nbd.max-in-flight-per-connection must be 1..4096, got {maxInFlight}");
        var port = ac.GetInt("cluster.port", 0);
        if (port is < 0 or > 65535) throw new SettingsException($"actorcache.cluster.port must be 0..65535, got {port}");

        return new NodeSettings
        {
            Cache = CacheFromConfig(ac, dataDir),
            Admin = admin!,
            DataDir = dataDir,
            Volumes = volumes,
            DefaultVolume = defaultVolume!,
            Nbd = new NbdServerOptions
            {
                Listen = listen,
                MaxInFlightPerConnection = maxInFlight,
                HandshakeTimeout = ac.GetTimeSpan("nbd.handshake-timeout", TimeSpan.FromSeconds(30)),
            },
            DefaultExport = ac.GetString("nbd.default-export", ""),
            StopGrace = ac.GetTimeSpan("nbd.stop-grace", TimeSpan.FromSeconds(5)),
            Metadata = provider,
            MetadataConnectionString = connectionString,
            ClusterHostname = ac.GetString("cluster.hostname", "127.0.0.1"),
            ClusterPort = port,
            SeedNodes = [.. ac.GetStringList("cluster.seed-nodes")],
            Config = config,
        };
    }

    private static CacheSettings CacheFromConfig(Config ac, string dataDir)
    {
        long Size(string key, long minimum)
        {
            var text = ac.GetString(key);
            if (!ByteSize.TryParse(text, out var bytes, out var error)) throw new SettingsException($"actorcache.{key}: {error}");
            if (bytes < minimum || bytes % 4096 != 0)
                throw new SettingsException($"actorcache.{key} = {text} must be a multiple of 4K and at least {ByteSize.Format(minimum)}");
            return bytes;
        }
        var ring = Size("cache.ring-size", 64L << 20);
        var segment = Size("cache.segment-size", 1L << 20);
        var capacity = Size("cache.log-capacity", 4 * segment);
        var maxBatch = Size("cache.max-batch", 64 << 10);
        if (maxBatch + 4096 > segment) throw new SettingsException($"actorcache.cache.max-batch must be smaller than cache.segment-size");
        if (2 * maxBatch > ring) throw new SettingsException($"actorcache.cache.ring-size must hold at least two batches (2 x cache.max-batch)");
        var fraction = ac.GetDouble("cache.retention-max-fraction", 0.5);
        if (fraction is <= 0 or > 1) throw new SettingsException($"actorcache.cache.retention-max-fraction must be in (0, 1], got {fraction}");
        // Retention shrinks only once the log passes its cap; a full log must be able to pass it (one more
        // batch, plus the end of a segment a batch did not fit in), or writers wait for the oldest history
        // to reach retention-time.
        var aboveCap = capacity - (long)(capacity * fraction);
        if (aboveCap < segment + maxBatch)
            throw new SettingsException($"actorcache.cache.retention-max-fraction {fraction} leaves {aboveCap} bytes of the {capacity}-byte log above " +
                                        $"the retention cap; it needs at least cache.segment-size + cache.max-batch ({segment + maxBatch}) or writers can stall");
        var policy = ac.GetString("cache.log-full-policy", "wait") switch
        {
            "wait" => ActorCache.Cache.LogFullPolicy.Wait,
            "fail" => ActorCache.Cache.LogFullPolicy.Fail,
            var other => throw new SettingsException($"actorcache.cache.log-full-policy '{other}' is unknown; use wait or fail"),
        };
        var logDir = ac.GetString("cache.log-dir", "");
        return new CacheSettings(ring, Path.GetFullPath(logDir.Length == 0 ? Path.Combine(dataDir, "log") : logDir), segment, capacity,
            ac.GetTimeSpan("cache.retention-time", TimeSpan.FromHours(1)), fraction, maxBatch,
            ac.GetTimeSpan("cache.destage-interval", TimeSpan.FromMilliseconds(500)), policy,
            ac.GetTimeSpan("cache.ring-wait-timeout", TimeSpan.FromSeconds(30)),
            ac.GetTimeSpan("cache.backing-write-delay", TimeSpan.Zero),
            ac.GetTimeSpan("cache.extent-idle-timeout", TimeSpan.FromSeconds(30)));
    }

    /// <summary>Where a volume's backing lives when the user names none.</summary>
    public static string DefaultBackingPath(string dataDir, string volume) => Path.Combine(dataDir, "volumes", volume + ".img");
}
