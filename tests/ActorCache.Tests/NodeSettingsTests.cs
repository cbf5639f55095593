using System.Net;
using ActorCache.Hosting;
using ActorCache.Volumes;

namespace ActorCache.Tests;

public sealed class NodeSettingsTests
{
    private static NodeSettings Load(string[]? volumes = null, string[]? listen = null, string[]? sets = null, string? config = null,
        string? dataDir = "/tmp/ac-settings", string? admin = null, string? nodeName = null, string? cluster = null, string[]? seeds = null) =>
        NodeSettingsLoader.Load(new ServeFlags(config, dataDir, listen ?? [], volumes ?? [], sets ?? [], admin, nodeName, cluster, seeds));

    [Fact]
    public void Defaults_serve_tcp_loopback_and_a_unix_socket_in_the_data_dir()
    {
        var s = Load();
        Assert.Equal("/tmp/ac-settings", s.DataDir);
        Assert.Equal(["tcp://127.0.0.1:10809", "unix:/tmp/ac-settings/nbd.sock"], s.Nbd.Listen.Select(l => l.Text));
        Assert.Equal(new VolumeSpec("vol0", 1L << 30, VolumeMode.WriteBack, null, false), s.DefaultVolume);
        Assert.Equal(MetadataProvider.Sqlite, s.Metadata);
        Assert.Equal("Data Source=/tmp/ac-settings/metadata.db", s.MetadataConnectionString);
        Assert.Empty(s.SeedNodes);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 9460), s.Admin.EndPoint);
        Assert.Equal(256, s.Nbd.MaxConnections);
        Assert.Equal(3, Load(sets: ["actorcache.nbd.max-connections = 3"]).Nbd.MaxConnections);
        // Large request buffers of all clients together: an eighth of the memory the node may use, at least 128M; or a size.
        Assert.Equal(Math.Max(128L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 8), s.Nbd.MaxLargeBufferBytes);
        Assert.Equal(256L << 20, Load(sets: ["actorcache.nbd.max-large-buffers = 256M"]).Nbd.MaxLargeBufferBytes);
        // A client that takes none of its replies is dropped after a minute.
        Assert.Equal(TimeSpan.FromSeconds(60), s.Nbd.SendTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), Load(sets: ["actorcache.nbd.send-timeout = 5s"]).Nbd.SendTimeout);
    }

    [Fact]
    public void The_cluster_defaults_are_the_host_name_port_4053_no_seeds_and_keep_majority()
    {
        var s = Load();
        Assert.Equal(ActorCache.Cluster.NodeIdentity.HostName(), s.NodeName);
        Assert.Null(s.NodeNameOrigin);
        Assert.Equal(("127.0.0.1", 4053), (s.ClusterHostname, s.ClusterPort));
        Assert.Empty(s.SeedNodes);
        Assert.Equal(TimeSpan.FromSeconds(20), s.JoinTimeout);
        Assert.Equal("Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster", s.Config.GetString("akka.cluster.downing-provider-class"));
        Assert.Equal("keep-majority", s.Config.GetString("akka.cluster.split-brain-resolver.active-strategy"));
        Assert.Equal(TimeSpan.FromSeconds(20), s.Config.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after"));
    }

    [Fact]
    public void Cluster_flags_win_over_configuration_and_seeds_take_both_forms()
    {
        string[] sets = ["actorcache.cluster.node-name = x", "actorcache.cluster.hostname = \"10.0.0.9\"", "actorcache.cluster.port = 5000",
            "actorcache.cluster.seed-nodes = [\"10.0.0.1:4053\", \"akka.tcp://actorcache@10.0.0.2:4053\"]"];
        var fromConfig = Load(sets: sets);
        Assert.Equal(("x", "actorcache.cluster.node-name = x"), (fromConfig.NodeName, fromConfig.NodeNameOrigin));
        Assert.Equal(("10.0.0.9", 5000), (fromConfig.ClusterHostname, fromConfig.ClusterPort));
        Assert.Equal(["akka.tcp://actorcache@10.0.0.1:4053", "akka.tcp://actorcache@10.0.0.2:4053"], fromConfig.SeedNodes);

        var fromFlags = Load(sets: sets, nodeName: "b", cluster: "[::1]:0", seeds: ["127.0.0.1:4053", "127.0.0.1:4053", "node1.example:4054"]);
        Assert.Equal(("b", "--node-name b"), (fromFlags.NodeName, fromFlags.NodeNameOrigin));
        Assert.Equal(("[::1]", 0), (fromFlags.ClusterHostname, fromFlags.ClusterPort));
        Assert.Equal(["akka.tcp://actorcache@127.0.0.1:4053", "akka.tcp://actorcache@node1.example:4054"], fromFlags.SeedNodes);
    }

    [Theory]
    [InlineData("banana", "'banana' needs a host and a port between 0 and 65535")]
    [InlineData("127.0.0.1:-1", "needs a host and a port")]
    [InlineData("::1:4053", "write an IPv6 host in brackets")]
    [InlineData("tcp://127.0.0.1:4053", "without a scheme")]
    public void Bad_cluster_addresses_say_what_is_wrong(string cluster, string reason)
    {
        var e = Assert.Throws<SettingsException>(() => Load(cluster: cluster));
        Assert.StartsWith("--cluster: ", e.Message);
        Assert.Contains(reason, e.Message);
        var seed = Assert.Throws<SettingsException>(() => Load(seeds: [cluster]));
        Assert.StartsWith("--seed: ", seed.Message);
    }

    [Fact]
    public void Admin_address_comes_from_configuration_and_the_flag_wins()
    {
        Assert.Equal(new IPEndPoint(IPAddress.Any, 0), Load(sets: ["actorcache.admin.listen = \"0.0.0.0:0\""]).Admin.EndPoint);
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 9999), Load(sets: ["actorcache.admin.listen = \"0.0.0.0:0\""], admin: "[::1]:9999").Admin.EndPoint);
        Assert.Equal(new IPEndPoint(IPAddress.Any, 9460), Load(admin: "*:9460").Admin.EndPoint);
    }

    [Theory]
    [InlineData("http://127.0.0.1:9460", "without a scheme")]
    [InlineData("127.0.0.1", "needs a host and a port")]
    [InlineData("127.0.0.1:65536", "needs a host and a port")]
    [InlineData(":9460", "needs a host and a port")]
    [InlineData("::1:9460", "IPv6 host in brackets")]
    public void Bad_admin_addresses_say_what_is_wrong(string admin, string reason)
    {
        var fromFlag = Assert.Throws<SettingsException>(() => Load(admin: admin));
        Assert.Contains("--admin", fromFlag.Message);
        Assert.Contains(reason, fromFlag.Message);
        var fromConfig = Assert.Throws<SettingsException>(() => Load(sets: [$"actorcache.admin.listen = \"{admin}\""]));
        Assert.Contains("actorcache.admin.listen", fromConfig.Message);
        Assert.Contains(reason, fromConfig.Message);
    }

    [Fact]
    public void The_extent_idle_timeout_reaches_the_cache_options()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), Load().Cache.OptionsFor("v").ExtentIdleTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), Load(sets: ["actorcache.cache.extent-idle-timeout = 5s"]).Cache.OptionsFor("v").ExtentIdleTimeout);
    }

    [Fact]
    public void The_index_save_settings_reach_the_cache_options()
    {
        var indexSaves = Load(sets: ["actorcache.cache.index-save-bytes = 1G", "actorcache.cache.index-save-interval = 5m", "actorcache.cache.full-replay-below = 4K"])
            .Cache.OptionsFor("v");
        Assert.Equal((1L << 30, TimeSpan.FromMinutes(5), 4096L), (indexSaves.IndexSaveBytes, indexSaves.IndexSaveInterval, indexSaves.FullReplayBelow));
        var defaults = Load().Cache.OptionsFor("v");
        Assert.Equal((256L << 20, TimeSpan.FromSeconds(60), 256L << 20), (defaults.IndexSaveBytes, defaults.IndexSaveInterval, defaults.FullReplayBelow));
    }

    [Fact]
    public void Every_cache_default_lives_in_the_reference_file_and_every_cache_setting_reaches_the_cache_options()
    {
        // Defaults: what the node reads from the reference is what CacheOptions takes when nobody says otherwise.
        var defaults = new ActorCache.Cache.CacheOptions { LogDirectory = "/tmp/ac-settings/log/v" };
        Assert.Equal(defaults, Load().Cache.OptionsFor("v"));
        var changed = Load(sets: ["actorcache.cache.segment-size = 8M", "actorcache.cache.log-capacity = 1G", "actorcache.cache.retention-time = 2m",
            "actorcache.cache.retention-max-fraction = 0.25", "actorcache.cache.max-batch = 1M", "actorcache.cache.destage-interval = 50ms",
            "actorcache.cache.log-full-policy = fail", "actorcache.cache.ring-wait-timeout = 7s", "actorcache.cache.extent-idle-timeout = 9s",
            "actorcache.cache.commit-interval = 3s", "actorcache.cache.flusher-tick = 20ms", "actorcache.cache.snapshot-space = 5G",
            "actorcache.cache.snapshot-space-policy = protect"]).Cache.OptionsFor("v");
        Assert.Equal(defaults with
        {
            SegmentSize = 8 << 20, LogCapacity = 1L << 30, RetentionTime = TimeSpan.FromMinutes(2), RetentionMaxFraction = 0.25, MaxBatchBlocks = 256,
            DestageInterval = TimeSpan.FromMilliseconds(50), LogFullPolicy = ActorCache.Cache.LogFullPolicy.Fail, RingWaitTimeout = TimeSpan.FromSeconds(7),
            ExtentIdleTimeout = TimeSpan.FromSeconds(9), CommitInterval = TimeSpan.FromSeconds(3), FlusherTick = TimeSpan.FromMilliseconds(20),
            SnapshotSpace = 5L << 30, SnapshotSpacePolicy = ActorCache.Cache.SnapshotSpacePolicy.Protect,
        }, changed);
    }

    [Fact]
    public void A_ring_above_the_largest_is_refused_and_one_above_2G_is_fine()
    {
        Assert.Equal(3L << 30, Load(sets: ["actorcache.cache.ring-size = 3G"]).Cache.RingSize);
        Assert.Contains("above the largest ring", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.cache.ring-size = 2T"])).Message);
    }

    [Fact]
    public void Flags_override_configuration()
    {
        var s = Load(volumes: ["a:512M", "b:10G:pass-through:backing=/dev/loop7:read-only"], listen: ["unix:/run/x.sock"],
            sets: ["actorcache.nbd.stop-grace = 9s", "actorcache.nbd.default-export=b"]);
        Assert.Equal(["unix:/run/x.sock"], s.Nbd.Listen.Select(l => l.Text));
        Assert.Equal(new VolumeSpec("a", 512L << 20, VolumeMode.WriteBack, null, false), s.Volumes[0]);
        Assert.Equal(new VolumeSpec("b", 10L << 30, VolumeMode.PassThrough, "/dev/loop7", true), s.Volumes[1]);
        Assert.Equal(TimeSpan.FromSeconds(9), s.StopGrace);
        Assert.Equal("b", s.DefaultExport);
    }

    [Fact]
    public void Config_file_is_read_and_flags_win_over_it()
    {
        var file = Path.GetTempFileName();
        File.WriteAllText(file, """
            actorcache {
              data-dir = /srv/ac
              volumes = ["fromfile:1G"]
              metadata { provider = postgresql, connection-string = "Host=db;Database=ac" }
            }
            """);
        try
        {
            var s = Load(config: file, volumes: ["fromflag:2G"], dataDir: null);
            Assert.Equal("/srv/ac", s.DataDir);
            Assert.Equal(["fromfile", "fromflag"], s.Volumes.Select(v => v.Name));
            Assert.Equal(MetadataProvider.PostgreSql, s.Metadata);
            Assert.Equal("Host=db;Database=ac", s.MetadataConnectionString);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("vol0:1.5G", "not a size")]
    [InlineData("vol0:12X", "unknown unit")]
    [InlineData("vol0:1000", "not a multiple of 4 KiB")]
    [InlineData("vol0", "at least NAME:SIZE")]
    [InlineData("../etc:1G", "not allowed")]
        [InlineData("vol0:1G:turbo", "unknown mode")]
    [InlineData("vol0:1G:write-back:pass-through", "unknown option")]
    [InlineData("vol0:1G:pass-through:colour=red", "unknown option")]
    public void Bad_volume_specs_say_what_is_wrong(string spec, string reason)
    {
        var e = Assert.Throws<SettingsException>(() => Load(volumes: [spec]));
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void Duplicate_volume_names_are_refused()
    {
        var e = Assert.Throws<SettingsException>(() => Load(volumes: ["a:1G", "a:2G"]));
        Assert.Contains("given twice", e.Message);
    }

    [Theory]
    [InlineData("http://x", "not a listen address")]
    [InlineData("tcp://127.0.0.1", "needs a host and a port")]
    [InlineData("tcp://127.0.0.1:99999", "needs a host and a port")]
    [InlineData("unix:", "names no socket path")]
    public void Bad_listen_addresses_say_what_is_wrong(string listen, string reason)
    {
        var e = Assert.Throws<SettingsException>(() => Load(listen: [listen]));
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void Bad_config_values_are_refused()
    {
        Assert.Contains("is not allowed", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.metadata.provider=oracle"])).Message);
        Assert.Contains("connection-string is empty", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.metadata.provider=postgresql"])).Message);
        Assert.Contains("key=value", Assert.Throws<SettingsException>(() => Load(sets: ["novalue"])).Message);
        Assert.Contains("does not exist", Assert.Throws<SettingsException>(() => Load(config: "/nonexistent.conf")).Message);
        Assert.Contains("writers can stall", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.cache.retention-max-fraction=1"])).Message);
        Assert.Contains("writers can stall", Assert.Throws<SettingsException>(
            () => Load(sets: ["actorcache.cache.log-capacity=256M", "actorcache.cache.segment-size=64M", "actorcache.cache.retention-max-fraction=0.8"])).Message);
        // Values near long.MaxValue overflowed the sums that check them and passed (then a volume's open failed and the node hung).
        Assert.Contains("must be smaller than cache.segment-size", Assert.Throws<SettingsException>(
            () => Load(sets: ["actorcache.cache.max-batch=9223372036854771712"])).Message);
        Assert.Contains("segment-size", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.cache.segment-size=9223372036854771712"])).Message);
        // A batch larger than a replication frame carries: every large write would drop the peers.
        Assert.Contains("replication frame", Assert.Throws<SettingsException>(() => Load(sets:
            ["actorcache.cache.max-batch=80M", "actorcache.cache.segment-size=128M", "actorcache.cache.ring-size=256M", "actorcache.cache.log-capacity=4G"])).Message);
    }
}

/// <summary>Configuration mistakes: each is refused with one line naming the key, the value and what is allowed.</summary>
public sealed class ConfigValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static NodeSettings Load(string[]? sets = null, string? config = null, string? dataDir = "/tmp/ac-settings") =>
        NodeSettingsLoader.Load(new ServeFlags(config, dataDir, [], [], sets ?? [], null));

    private string File(string text)
    {
        var path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".conf");
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    [Theory]
    [InlineData("actorcache { nbd { stop-grace = 1s }", "'{' opened on line 1 is never closed")]
    [InlineData("{{{{ ::: }", "never closed")]
    [InlineData("actorcache.nbd.stop-grace = 1s }", "'}' on line 1 closes nothing")]
    [InlineData("actorcache.data-dir = \"/srv", "string opened on line 1 is never closed")]
    [InlineData("actorcache.volumes = [\"a:1G\"}", "does not match")]
    [InlineData("actorcache.data-dir = /srv\nstray", "stray has no value")]
    [InlineData("::: ;;;", "has no value")]
    [InlineData(":::", "Unknown token")]
    public void Malformed_hocon_in_a_config_file_is_refused_with_where(string text, string reason)
    {
        var path = File(text);
        var e = Assert.Throws<SettingsException>(() => Load(config: path));
        Assert.Contains($"config file {path} is not valid HOCON", e.Message);
        Assert.Contains(reason, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Comments_substitutions_and_triple_quoted_strings_are_not_mistaken_for_errors()
    {
        var path = File(""""
            # a comment with { and "
            // another } one
            actorcache {
              data-dir = "/srv/a}c" # trailing
              nbd.default-export = vol0
              metadata.connection-string = """Host=db;Database="ac{";x"""
              cluster.hostname = ${actorcache.nbd.default-export}
            }
            """");
        var s = Load(config: path, dataDir: null);
        Assert.Equal("/srv/a}c", s.DataDir);
        Assert.Equal("vol0", s.ClusterHostname);
        Assert.Equal("Host=db;Database=\"ac{\";x", s.MetadataConnectionString);
    }

    [Fact]
    public void An_empty_config_file_a_device_or_a_directory_is_refused()
    {
        Assert.Contains("sets nothing", Assert.Throws<SettingsException>(() => Load(config: "/dev/null")).Message);
        Assert.Contains("sets nothing", Assert.Throws<SettingsException>(() => Load(config: File("# only a comment\n"))).Message);
        Assert.Contains($"config file {_dir} is a directory", Assert.Throws<SettingsException>(() => Load(config: _dir)).Message);
    }

    [Theory]
    [InlineData("actorcache.cache.ringsize=1G", "unknown key actorcache.cache.ringsize; did you mean actorcache.cache.ring-size?")]
    [InlineData("actorcache.ring-size=1G", "unknown key actorcache.ring-size; did you mean actorcache.cache.ring-size?")]
    [InlineData("actorcache.nbd.lisen=[]", "did you mean actorcache.nbd.listen?")]
    [InlineData("actorcach.nbd.stop-grace=1s", "unknown key actorcach; did you mean actorcache?")]
    [InlineData("actorcache.frobnicate=1", "unknown key actorcache.frobnicate; hocon/actorcache.conf lists every setting")]
    [InlineData("actorcache.nbd=5", "actorcache.nbd is a block of settings")]
    [InlineData("actorcache.data-dir { x = 1 }", "actorcache.data-dir is a single setting, not a block")]
    public void Unknown_keys_are_refused_with_the_closest_known_one(string set, string reason)
    {
        var e = Assert.Throws<SettingsException>(() => Load(sets: [set]));
        Assert.Contains($"--set '{set}'", e.Message);
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void Unknown_keys_in_a_config_file_name_the_file()
    {
        var path = File("actorcache { cache { log-capacty = 1G } }");
        var e = Assert.Throws<SettingsException>(() => Load(config: path));
        Assert.Equal($"config file {path}: unknown key actorcache.cache.log-capacty; did you mean actorcache.cache.log-capacity?", e.Message);
    }

    [Fact]
    public void Akka_settings_and_the_cache_dispatchers_stay_free_form()
    {
        Load(sets: ["akka.loglevel = DEBUG", "akka.anything.goes = 1", "actorcache.cache.log-dispatcher.thread-priority = Normal"]);
    }

    [Theory]
    [InlineData("actorcache.nbd.stop-grace=banana", "actorcache.nbd.stop-grace = banana is not a duration; write a number with a unit (ms, s, m, h, d), e.g. 5s")]
    [InlineData("actorcache.nbd.stop-grace=-5s", "actorcache.nbd.stop-grace = -5s is not a duration")]
    [InlineData("actorcache.nbd.stop-grace=0s", "")]
    [InlineData("actorcache.nbd.handshake-timeout=infinite", "actorcache.nbd.handshake-timeout = infinite is not a duration")]
    [InlineData("actorcache.nbd.send-timeout=never", "actorcache.nbd.send-timeout = never is not a duration")]
    [InlineData("actorcache.nbd.max-in-flight-per-connection=lots", "actorcache.nbd.max-in-flight-per-connection = lots is not allowed; use a whole number from 1 to 4096")]
    [InlineData("actorcache.nbd.max-in-flight-per-connection=0", "from 1 to 4096")]
    [InlineData("actorcache.nbd.max-connections=0", "actorcache.nbd.max-connections = 0 is not allowed; use a whole number from 1 to 65536")]
    [InlineData("actorcache.nbd.max-large-buffers=lots", "actorcache.nbd.max-large-buffers = lots is not allowed: 'lots' is not a size")]
    [InlineData("actorcache.nbd.max-large-buffers=1M", "actorcache.nbd.max-large-buffers = 1M is not allowed; use a multiple of 4K of at least 64M")]
    [InlineData("actorcache.cluster.port=http", "actorcache.cluster.port = http is not allowed; use a whole number from 0 to 65535")]
    [InlineData("actorcache.cache.ring-size=lots", "actorcache.cache.ring-size = lots is not allowed: 'lots' is not a size")]
    [InlineData("actorcache.cache.segment-size=1000", "actorcache.cache.segment-size = 1000 is not allowed; use a multiple of 4K of at least 1M")]
    [InlineData("actorcache.cache.retention-max-fraction=half", "actorcache.cache.retention-max-fraction = half is not allowed; use a number greater than 0 and at most 1")]
    [InlineData("actorcache.cache.retention-time=soon", "actorcache.cache.retention-time = soon is not a duration")]
    [InlineData("actorcache.cache.destage-interval=0s", "actorcache.cache.destage-interval = 0s is not allowed; it must be at least 1ms")]
    [InlineData("actorcache.cache.log-full-policy=panic", "actorcache.cache.log-full-policy = panic is not allowed; use wait or fail")]
    [InlineData("actorcache.metadata.provider=oracle", "actorcache.metadata.provider = oracle is not allowed; use sqlite or postgresql or postgres")]
    [InlineData("actorcache.volumes=\"a:1G\"", "actorcache.volumes = \"a:1G\" must be a list, e.g. actorcache.volumes = [\"vol1:10G\"]")]
    [InlineData("actorcache.data-dir=[a, b]", "actorcache.data-dir must be a single value")]
    [InlineData("actorcache.data-dir=\"\"", "actorcache.data-dir is empty")]
    [InlineData("actorcache.nbd.default-export=\"a/b\"", "actorcache.nbd.default-export = a/b is not a volume name")]
    [InlineData("actorcache.cluster.seed-nodes=[\"10.0.0.1:4053\"]", "")]
    [InlineData("actorcache.cluster.seed-nodes=[\"10.0.0.1\"]", "actorcache.cluster.seed-nodes: '10.0.0.1' needs a host and a port between 1 and 65535")]
    [InlineData("actorcache.cluster.seed-nodes=[\"akka.tcp://other@10.0.0.1:4053\"]", "is not a node address; write HOST:PORT (or akka.tcp://actorcache@HOST:PORT)")]
    [InlineData("actorcache.cluster.node-name=\"a/b\"", "actorcache.cluster.node-name: 'a/b' is not a node name")]
    [InlineData("actorcache.cluster.join-timeout=0s", "actorcache.cluster.join-timeout = 0s is not allowed; it must be at least 1s")]
    [InlineData("actorcache.cluster.seed-nodes=[\"akka.tcp://actorcache@10.0.0.1:4053\"]", "")]
    [InlineData("actorcache.cluster.hostname=\"\"", "actorcache.cluster.hostname is empty")]
    public void Every_bad_value_names_the_key_the_value_and_what_is_allowed(string set, string message)
    {
        if (message.Length == 0)
        {
            Load(sets: [set]); // the edge of what is allowed
            return;
        }
        var e = Assert.Throws<SettingsException>(() => Load(sets: [set], dataDir: null));
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void An_empty_data_dir_flag_is_refused()
    {
        Assert.Contains("--data-dir names no directory", Assert.Throws<SettingsException>(() => Load(dataDir: "")).Message);
    }
}
