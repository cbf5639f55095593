using ActorCache.Admin;
using ActorCache.Blocks;
using ActorCache.Nbd;
using ActorCache.Volumes;
using ActorCache.Configuration;
using Akka.Configuration;

namespace ActorCache.Hosting;

public enum MetadataProvider { Sqlite, PostgreSql }

/// <summary>How a node finds its cluster (<c>actorcache.cluster.discovery</c>, <c>--discovery</c>).</summary>
public enum ClusterDiscovery { Seeds, Kubernetes, Config }

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
    /// <summary>The node's name in the cluster (its member role <c>node:NAME</c>); see <see cref="Cluster.NodeIdentity"/>.</summary>
    public required string NodeName { get; init; }
    /// <summary>Where the name was asked for (<c>--node-name b</c>), or null when it defaulted to the host name.</summary>
    public string? NodeNameOrigin { get; init; }
    /// <summary>Where Akka remoting binds (<c>--cluster</c>); port 0 picks a free one.</summary>
    public required string ClusterHostname { get; init; }
    public required int ClusterPort { get; init; }
    /// <summary>What the cluster address was given as, for messages: <c>--cluster</c> or the HOCON keys.</summary>
    public string ClusterOrigin { get; init; } = "actorcache.cluster.hostname/port";
    /// <summary>Akka addresses of the seed nodes (akka.tcp://actorcache@HOST:PORT); empty: the node joins itself.</summary>
    public required IReadOnlyList<string> SeedNodes { get; init; }
    /// <summary>How long a node may take to join its seeds before it says so (log, /health).</summary>
    public TimeSpan JoinTimeout { get; init; } = TimeSpan.FromSeconds(20);
    /// <summary>Seeds, or cluster bootstrap through Kubernetes or a static list (see <see cref="Cluster.ClusterBootstrapConfig"/>).</summary>
    public ClusterDiscovery Discovery { get; init; } = ClusterDiscovery.Seeds;
    /// <summary>Akka.Management's HTTP endpoint (bootstrap's contact point), with kubernetes or config discovery.</summary>
    public ActorCache.Cluster.ClusterAddress? Management { get; init; }
    public int RequiredContactPoints { get; init; } = 2;
    /// <summary>With config discovery: every node's management endpoint.</summary>
    public IReadOnlyList<ActorCache.Cluster.ClusterAddress> ContactPoints { get; init; } = [];
    public string KubernetesLabelSelector { get; init; } = "";
    /// <summary>Empty: the service account's namespace file.</summary>
    public string KubernetesNamespace { get; init; } = "";
    public string KubernetesPortName { get; init; } = "management";
    public string KubernetesTokenPath { get; init; } = "";
    public string KubernetesCaPath { get; init; } = "";
    public string KubernetesNamespacePath { get; init; } = "";
    public required CacheSettings Cache { get; init; }
    /// <summary>Where the admin HTTP listener (/metrics, /health, /api) binds.</summary>
    public required AdminListenAddress Admin { get; init; }
    /// <summary>actorcache.replication: the data listener and the replicators' limits.</summary>
    public ActorCache.Replicas.ReplicationSettings Replication { get; init; } = ActorCache.Replicas.ReplicationSettings.Default;
    /// <summary>The merged configuration, handed to Akka so its own settings can be overridden the same way.</summary>
    public required Config Config { get; init; }
}

/// <summary>The node's cache settings (actorcache.cache): the shared ring and the per-volume log.</summary>
public sealed record CacheSettings(
    long RingSize, string LogDir, long SegmentSize, long LogCapacity, TimeSpan RetentionTime, double RetentionMaxFraction,
    long MaxBatch, TimeSpan DestageInterval, ActorCache.Cache.LogFullPolicy LogFullPolicy, TimeSpan RingWaitTimeout, TimeSpan BackingWriteDelay,
    TimeSpan ExtentIdleTimeout, TimeSpan CommitInterval, TimeSpan FlusherTick, long SnapshotSpace, ActorCache.Cache.SnapshotSpacePolicy SnapshotSpacePolicy)
{
    /// <summary>A test aid (cache.recovery-delay): the replay of an opening volume pauses this long at each progress report.</summary>
    public TimeSpan RecoveryDelay { get; init; }

    /// <summary>When the index is persisted (cache.index-save-bytes, cache.index-save-interval) and below what history an open replays it all (cache.full-replay-below).</summary>
    public (long Bytes, TimeSpan Interval, long FullReplayBelow) IndexSaves { get; init; } = (256L << 20, TimeSpan.FromSeconds(60), 256L << 20);

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
        CommitInterval = CommitInterval,
        FlusherTick = FlusherTick,
        SnapshotSpace = SnapshotSpace,
        SnapshotSpacePolicy = SnapshotSpacePolicy,
        IndexSaveBytes = IndexSaves.Bytes,
        IndexSaveInterval = IndexSaves.Interval,
        FullReplayBelow = IndexSaves.FullReplayBelow,
    };
}

/// <summary>The flags of <c>actorcache serve</c> that override configuration.</summary>
public sealed record ServeFlags(string? ConfigFile, string? DataDir, IReadOnlyList<string> Listen, IReadOnlyList<string> Volumes,
    IReadOnlyList<string> Sets, string? Admin = null, string? NodeName = null, string? Cluster = null, IReadOnlyList<string>? Seeds = null,
    string? Discovery = null, string? Management = null);

/// <summary>Raised for settings a user got wrong; the message says which and how to fix it.</summary>
public class SettingsException(string message) : Exception(message);

public static class NodeSettingsLoader
{
    /// <summary>The reference file shipped next to the binary.</summary>
    public static string ReferencePath => Path.Combine(AppContext.BaseDirectory, "hocon", "actorcache.conf");

    /// <summary>
    /// Reads the reference, then the --config file, then each --set over it; every source is checked for
    /// HOCON syntax and unknown keys on its own (so the message names where the mistake is), and the
    /// merged result for the kind and range of every value.
    /// </summary>
    public static NodeSettings Load(ServeFlags flags)
    {
        var reference = ConfigurationFactory.ParseString(File.ReadAllText(ReferencePath));
        var schema = new ConfigSchema(reference);
        var config = reference;
        if (flags.ConfigFile is not null)
        {
            var origin = $"config file {flags.ConfigFile}";
            var file = HoconText.Parse(ReadConfigFile(flags.ConfigFile), origin);
            // An empty file (or /dev/null) is more likely the wrong file than a wish for the defaults.
            if (file.IsEmpty) throw new SettingsException($"{origin} sets nothing (it is empty or only comments); give a file with settings or leave --config out");
            schema.Check(file, origin);
            config = file.WithFallback(config);
        }
        foreach (var set in flags.Sets)
        {
            var eq = set.IndexOf('=');
            if (eq <= 0) throw new SettingsException($"--set '{set}' must look like key=value, e.g. --set actorcache.nbd.stop-grace=10s");
            var origin = $"--set '{set}'";
            var one = HoconText.Parse($"{set[..eq].Trim()} = {set[(eq + 1)..].Trim()}", origin);
            schema.Check(one, origin);
            config = one.WithFallback(config);
        }
        return FromConfig(config, flags);
    }

    private static string ReadConfigFile(string path)
    {
        if (Directory.Exists(path)) throw new SettingsException($"config file {path} is a directory; give --config a HOCON file");
        if (!File.Exists(path)) throw new SettingsException($"config file {path} does not exist");
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SettingsException($"config file {path} cannot be read: {e.Message}");
        }
    }

    private static NodeSettings FromConfig(Config config, ServeFlags flags)
    {
        var read = new SettingsReader(config);
        var dataDirText = read.String("data-dir");
        if (flags.DataDir is not null) dataDirText = flags.DataDir;
        if (string.IsNullOrWhiteSpace(dataDirText))
            throw new SettingsException(flags.DataDir is not null ? "--data-dir names no directory; give a path, e.g. --data-dir ./data" : "actorcache.data-dir is empty; give a path, e.g. \"./data\"");
        var dataDir = Path.GetFullPath(dataDirText);

        var volumes = new List<VolumeSpec>();
        foreach (var text in read.StringList("volumes", "\"vol1:10G\"").Concat(flags.Volumes))
        {
            if (!VolumeSpec.TryParse(text, out var spec, out var error)) throw new SettingsException(error);
            if (volumes.Any(v => v.Name == spec!.Name))
                throw new SettingsException($"volume {spec!.Name} is given twice; each volume name may appear once");
            volumes.Add(spec!);
        }
        if (!VolumeSpec.TryParse(read.String("default-volume"), out var defaultVolume, out var defaultError))
            throw new SettingsException($"actorcache.default-volume: {defaultError}");

        IReadOnlyList<string> listenTexts = flags.Listen.Count > 0 ? flags.Listen : read.StringList("nbd.listen", "\"tcp://127.0.0.1:10809\"");
        if (listenTexts.Count == 0) listenTexts = ["tcp://127.0.0.1:10809", $"unix:{Path.Combine(dataDir, "nbd.sock")}"];
        var listen = new List<NbdListenAddress>();
        foreach (var text in listenTexts)
        {
            if (!NbdListenAddress.TryParse(text, out var address, out var error)) throw new SettingsException(error);
            listen.Add(address!);
        }

        var adminText = flags.Admin ?? read.String("admin.listen");
        if (!AdminListenAddress.TryParse(adminText, out var admin, out var adminError))
            throw new SettingsException($"{(flags.Admin is null ? "actorcache.admin.listen" : "--admin")}: {adminError}");

        var provider = read.Choice("metadata.provider", ("sqlite", MetadataProvider.Sqlite), ("postgresql", MetadataProvider.PostgreSql),
            ("postgres", MetadataProvider.PostgreSql));
        var connectionString = read.String("metadata.connection-string");
        if (provider == MetadataProvider.PostgreSql && string.IsNullOrWhiteSpace(connectionString))
            throw new SettingsException("actorcache.metadata.provider is postgresql but actorcache.metadata.connection-string is empty");
        if (provider == MetadataProvider.Sqlite && connectionString.Length == 0)
            connectionString = $"Data Source={Path.Combine(dataDir, "metadata.db")}";

        var discovery = Discovery(read, flags.Discovery);
        var (nodeName, nodeNameOrigin) = NodeName(read, flags.NodeName, discovery);
        var (clusterHost, clusterPort, clusterOrigin) = ClusterAddress(read, flags.Cluster);
        var seedNodes = SeedNodes(read, flags.Seeds);
        if (discovery != ClusterDiscovery.Seeds && seedNodes.Count > 0)
            throw new SettingsException($"seed nodes are given (--seed or actorcache.cluster.seed-nodes) but discovery is {discovery.ToString().ToLowerInvariant()}: " +
                                        "bootstrap finds the cluster without seeds; leave the seeds out, or use --discovery seeds");
        var management = Management(read, flags.Management, clusterHost);
        var contactPoints = ContactPoints(read);
        if (discovery == ClusterDiscovery.Config && contactPoints.Count == 0)
            throw new SettingsException("discovery is config but actorcache.cluster.contact-points is empty; list every node's management endpoint, " +
                                        "e.g. contact-points = [\"10.0.0.1:8558\", \"10.0.0.2:8558\", \"10.0.0.3:8558\"]");

        var defaultExport = read.String("nbd.default-export");
        if (defaultExport.Length > 0 && !VolumeSpec.IsValidName(defaultExport))
            throw new SettingsException($"actorcache.nbd.default-export = {defaultExport} is not a volume name; use the name of a volume, or \"\" for the only one");

        return new NodeSettings
        {
            Cache = CacheFromConfig(read, dataDir),
            Replication = ActorCache.Replicas.ReplicationSettings.Read(read, clusterHost),
            Admin = admin!,
            DataDir = dataDir,
            Volumes = volumes,
            DefaultVolume = defaultVolume!,
            Nbd = new NbdServerOptions
            {
                Listen = listen,
                MaxInFlightPerConnection = read.Int("nbd.max-in-flight-per-connection", 1, 4096),
                HandshakeTimeout = read.Duration("nbd.handshake-timeout", TimeSpan.FromMilliseconds(1), "30s"),
                SendTimeout = read.Duration("nbd.send-timeout", TimeSpan.FromMilliseconds(1), "60s"),
                MaxConnections = read.Int("nbd.max-connections", 1, 65536),
                MaxLargeBufferBytes = read.String("nbd.max-large-buffers") == "auto"
                    ? NbdServerOptions.AutoMaxLargeBufferBytes()
                    : read.Size("nbd.max-large-buffers", 64L << 20),
            },
            DefaultExport = defaultExport,
            StopGrace = read.Duration("nbd.stop-grace", TimeSpan.Zero, "5s"),
            Metadata = provider,
            MetadataConnectionString = connectionString,
            NodeName = nodeName,
            NodeNameOrigin = nodeNameOrigin,
            ClusterHostname = clusterHost,
            ClusterPort = clusterPort,
            ClusterOrigin = clusterOrigin,
            SeedNodes = seedNodes,
            JoinTimeout = read.Duration("cluster.join-timeout", TimeSpan.FromSeconds(1), "20s"),
            Discovery = discovery,
            Management = management,
            RequiredContactPoints = read.Int("cluster.required-contact-points", 1, 1000),
            ContactPoints = contactPoints,
            KubernetesLabelSelector = NonEmpty(read, "cluster.kubernetes.label-selector", "\"app.kubernetes.io/name=actorcache\""),
            KubernetesNamespace = KubernetesNamespace(read),
            KubernetesPortName = NonEmpty(read, "cluster.kubernetes.management-port-name", "\"management\""),
            KubernetesTokenPath = NonEmpty(read, "cluster.kubernetes.token-path", "\"/var/run/secrets/kubernetes.io/serviceaccount/token\""),
            KubernetesCaPath = NonEmpty(read, "cluster.kubernetes.ca-path", "\"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt\""),
            KubernetesNamespacePath = Path.Combine(Path.GetDirectoryName(NonEmpty(read, "cluster.kubernetes.token-path", "\"/var/run/secrets/kubernetes.io/serviceaccount/token\"")) ?? "/", "namespace"),
            Config = config,
        };
    }

    /// <summary>--discovery, else actorcache.cluster.discovery.</summary>
    private static ClusterDiscovery Discovery(SettingsReader read, string? flag)
    {
        if (flag is null)
            return read.Choice("cluster.discovery", ("seeds", ClusterDiscovery.Seeds), ("kubernetes", ClusterDiscovery.Kubernetes), ("config", ClusterDiscovery.Config));
        return flag.Trim().ToLowerInvariant() switch
        {
            "seeds" => ClusterDiscovery.Seeds,
            "kubernetes" => ClusterDiscovery.Kubernetes,
            "config" => ClusterDiscovery.Config,
            _ => throw new SettingsException($"--discovery {flag}: use seeds, kubernetes or config"),
        };
    }

    /// <summary>Akka.Management's endpoint: --management, else actorcache.cluster.management, else the cluster host on 8558.</summary>
    private static ActorCache.Cluster.ClusterAddress Management(SettingsReader read, string? flag, string clusterHost)
    {
        var text = flag ?? read.String("cluster.management");
        if (flag is null && string.IsNullOrWhiteSpace(text)) return new ActorCache.Cluster.ClusterAddress(clusterHost, ActorCache.Cluster.ClusterBootstrapConfig.DefaultManagementPort);
        // Port 0 is refused: the other nodes find this one at the port it is configured with.
        if (!ActorCache.Cluster.ClusterAddress.TryParse(text, seed: true, out var address, out var error) || text.Contains("://", StringComparison.Ordinal))
            throw new SettingsException($"{(flag is null ? "actorcache.cluster.management" : "--management")}: {(error.Length > 0 ? error : $"'{text}' is not HOST:PORT")} (e.g. 10.0.0.5:8558)");
        return address!;
    }

    private static IReadOnlyList<ActorCache.Cluster.ClusterAddress> ContactPoints(SettingsReader read)
    {
        var points = new List<ActorCache.Cluster.ClusterAddress>();
        foreach (var text in read.StringList("cluster.contact-points", "\"10.0.0.1:8558\""))
        {
            if (!ActorCache.Cluster.ClusterAddress.TryParse(text, seed: true, out var address, out var error) || text.Contains("://", StringComparison.Ordinal))
                throw new SettingsException($"actorcache.cluster.contact-points: {(error.Length > 0 ? error : $"'{text}' is not HOST:PORT")} (a management endpoint, e.g. 10.0.0.1:8558)");
            if (!points.Contains(address!)) points.Add(address!);
        }
        return points;
    }

    /// <summary>actorcache.cluster.kubernetes.namespace, else POD_NAMESPACE (downward API), else empty (the service account's file).</summary>
    private static string KubernetesNamespace(SettingsReader read)
    {
        var configured = read.String("cluster.kubernetes.namespace").Trim();
        if (configured.Length > 0) return configured;
        return (Environment.GetEnvironmentVariable("POD_NAMESPACE") ?? "").Trim();
    }

    /// <summary>
    /// The node's name: --node-name, else actorcache.cluster.node-name, else (with kubernetes discovery) the pod's
    /// name from POD_NAME, else the host name.
    /// </summary>
    private static (string Name, string? Origin) NodeName(SettingsReader read, string? flag, ClusterDiscovery discovery)
    {
        var (name, origin) = flag is not null ? (flag, $"--node-name {flag}") : (read.String("cluster.node-name"), $"actorcache.cluster.node-name = {read.String("cluster.node-name")}");
        if (flag is null && name.Length == 0 && discovery == ClusterDiscovery.Kubernetes &&
            Environment.GetEnvironmentVariable("POD_NAME") is { Length: > 0 } podName)
        {
            if (!ActorCache.Cluster.NodeIdentity.IsValidName(podName))
                throw new SettingsException(ActorCache.Cluster.NodeIdentity.NameError(podName, "POD_NAME (the pod's name, the node's name with kubernetes discovery)"));
            return (podName, $"POD_NAME={podName}");
        }
        if (flag is null && name.Length == 0) return (ActorCache.Cluster.NodeIdentity.HostName(), null);
        if (!ActorCache.Cluster.NodeIdentity.IsValidName(name))
            throw new SettingsException(ActorCache.Cluster.NodeIdentity.NameError(name, flag is not null ? "--node-name" : "actorcache.cluster.node-name"));
        return (name, origin);
    }

    /// <summary>Where Akka remoting binds: --cluster HOST:PORT, else actorcache.cluster.hostname and port.</summary>
    private static (string Host, int Port, string Origin) ClusterAddress(SettingsReader read, string? flag)
    {
        if (flag is null)
            return (NonEmpty(read, "cluster.hostname", "\"127.0.0.1\""), read.Int("cluster.port", 0, 65535), "actorcache.cluster.hostname/port");
        if (!ActorCache.Cluster.ClusterAddress.TryParse(flag, seed: false, out var address, out var error)) throw new SettingsException($"--cluster: {error}");
        return (address!.Host, address.Port, $"--cluster {flag}");
    }

    private static string NonEmpty(SettingsReader read, string key, string example)
    {
        var value = read.String(key);
        if (string.IsNullOrWhiteSpace(value)) throw new SettingsException($"actorcache.{key} is empty; give a value, e.g. {example}");
        return value;
    }

    /// <summary>
    /// Akka addresses of the seed nodes (akka.tcp://actorcache@HOST:PORT): --seed HOST:PORT (repeatable,
    /// replaces the configured list), else actorcache.cluster.seed-nodes (HOST:PORT or Akka addresses).
    /// </summary>
    private static IReadOnlyList<string> SeedNodes(SettingsReader read, IReadOnlyList<string>? flags)
    {
        var fromFlags = flags is { Count: > 0 };
        var texts = fromFlags ? flags! : read.StringList("cluster.seed-nodes", "\"10.0.0.1:4053\"");
        var seeds = new List<string>();
        foreach (var text in texts)
        {
            if (!ActorCache.Cluster.ClusterAddress.TryParse(text, seed: true, out var address, out var error))
                throw new SettingsException($"{(fromFlags ? "--seed" : "actorcache.cluster.seed-nodes")}: {error}");
            if (!seeds.Contains(address!.AkkaAddress)) seeds.Add(address.AkkaAddress);
        }
        return seeds;
    }

    private const long MaxSegmentSize = 1L << 40;

    private static CacheSettings CacheFromConfig(SettingsReader read, string dataDir)
    {
        var ring = read.Size("cache.ring-size", 64L << 20);
        if (ring > ActorCache.Cache.RingBuffer.MaxBytes)
            throw new SettingsException($"actorcache.cache.ring-size = {ByteSize.Format(ring)} is above the largest ring, {ByteSize.Format(ActorCache.Cache.RingBuffer.MaxBytes)}");
        var segment = read.Size("cache.segment-size", 1L << 20);
        // Checked so that no sum or product below can overflow (a setting near long.MaxValue passed these checks once).
        if (segment > MaxSegmentSize) throw new SettingsException($"actorcache.cache.segment-size = {ByteSize.Format(segment)} is above {ByteSize.Format(MaxSegmentSize)}");
        var capacity = read.Size("cache.log-capacity", 4 * segment);
        var maxBatch = read.Size("cache.max-batch", 64 << 10);
        if (maxBatch > segment - 4096) throw new SettingsException($"actorcache.cache.max-batch must be smaller than cache.segment-size");
        if (maxBatch > ring / 2) throw new SettingsException($"actorcache.cache.ring-size must hold at least two batches (2 x cache.max-batch)");
        // A replica refuses a frame above this (and a peer dropped for every large write would be resynced over and over).
        if (maxBatch > ActorCache.Replication.ReplicaReceiver.MaxBatchBytes)
            throw new SettingsException($"actorcache.cache.max-batch = {ByteSize.Format(maxBatch)} is above {ByteSize.Format(ActorCache.Replication.ReplicaReceiver.MaxBatchBytes)}, " +
                                        "the largest batch a replication frame carries");
        var fraction = read.Fraction("cache.retention-max-fraction", 0, 1);
        // Retention shrinks only once the log passes its cap; a full log must be able to pass it (one more
        // batch, plus the end of a segment a batch did not fit in), or writers wait for the oldest history
        // to reach retention-time.
        var aboveCap = capacity - (long)(capacity * fraction);
        if (aboveCap - segment < maxBatch)
        {
            throw new SettingsException($"actorcache.cache.retention-max-fraction {fraction} leaves {aboveCap} bytes of the {capacity}-byte log above " +
                                        $"the retention cap; it needs at least cache.segment-size + cache.max-batch ({segment + maxBatch}) or writers can stall");
        }
        var policy = read.Choice("cache.log-full-policy", ("wait", ActorCache.Cache.LogFullPolicy.Wait), ("fail", ActorCache.Cache.LogFullPolicy.Fail));
        var logDir = read.String("cache.log-dir");
        return new CacheSettings(ring, Path.GetFullPath(logDir.Length == 0 ? Path.Combine(dataDir, "log") : logDir), segment, capacity,
            read.Duration("cache.retention-time", TimeSpan.Zero, "1h"), fraction, maxBatch,
            read.Duration("cache.destage-interval", TimeSpan.FromMilliseconds(1), "500ms"), policy,
            read.Duration("cache.ring-wait-timeout", TimeSpan.FromMilliseconds(1), "30s"),
            read.Duration("cache.backing-write-delay", TimeSpan.Zero, "5ms"),
            read.Duration("cache.extent-idle-timeout", TimeSpan.FromMilliseconds(1), "30s"),
            read.Duration("cache.commit-interval", TimeSpan.FromMilliseconds(1), "1s"),
            read.Duration("cache.flusher-tick", TimeSpan.FromMilliseconds(1), "200ms"),
            read.Size("cache.snapshot-space", 0),
            read.Choice("cache.snapshot-space-policy", ("expire-oldest", ActorCache.Cache.SnapshotSpacePolicy.ExpireOldest),
                ("protect", ActorCache.Cache.SnapshotSpacePolicy.Protect)))
        {
            IndexSaves = (read.Size("cache.index-save-bytes", 4096), read.Duration("cache.index-save-interval", TimeSpan.FromMilliseconds(1), "60s"),
                read.Size("cache.full-replay-below", 1)),
            RecoveryDelay = read.Duration("cache.recovery-delay", TimeSpan.Zero, "100ms"),
        };
    }

    /// <summary>Where a volume's backing lives when the user names none.</summary>
    public static string DefaultBackingPath(string dataDir, string volume) => Path.Combine(dataDir, "volumes", volume + ".img");
}
