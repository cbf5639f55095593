using System.Net;
using ActorCache.Hosting;
using ActorCache.Volumes;

namespace ActorCache.Tests;

public sealed class NodeSettingsTests
{
    private static NodeSettings Load(string[]? volumes = null, string[]? listen = null, string[]? sets = null, string? config = null,
        string? dataDir = "/tmp/ac-settings", string? admin = null) =>
        NodeSettingsLoader.Load(new ServeFlags(config, dataDir, listen ?? [], volumes ?? [], sets ?? [], admin));

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
        Assert.Contains("unknown", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.metadata.provider=oracle"])).Message);
        Assert.Contains("connection-string is empty", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.metadata.provider=postgresql"])).Message);
        Assert.Contains("key=value", Assert.Throws<SettingsException>(() => Load(sets: ["novalue"])).Message);
        Assert.Contains("does not exist", Assert.Throws<SettingsException>(() => Load(config: "/nonexistent.conf")).Message);
        Assert.Contains("writers can stall", Assert.Throws<SettingsException>(() => Load(sets: ["actorcache.cache.retention-max-fraction=1"])).Message);
        Assert.Contains("writers can stall", Assert.Throws<SettingsException>(
            () => Load(sets: ["actorcache.cache.log-capacity=256M", "actorcache.cache.segment-size=64M", "actorcache.cache.retention-max-fraction=0.8"])).Message);
    }
}
