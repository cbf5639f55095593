using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>The admin HTTP listener of the real node: Prometheus metrics that follow real NBD traffic, health, admin.url.</summary>
public sealed class AdminTests : IDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    /// <summary>Every sample of a Prometheus text exposition, by series (<c>name{labels}</c>).</summary>
    private static async Task<Dictionary<string, double>> ScrapeAsync(NodeProcess node)
    {
        using var response = await Http.GetAsync(node.AdminUrl + "/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        return NodeProcess.ParseMetrics(await response.Content.ReadAsStringAsync());
    }

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(NodeProcess node, string path)
    {
        using var response = await Http.GetAsync(node.AdminUrl + path);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task While_a_volume_recovers_its_log_health_and_volume_status_show_its_progress_and_changes_are_refused()
    {
        // A log of many small batches (a FLUSH after every 4 KiB write), left by kill -9: the next open replays
        // it whole (far below cache.full-replay-below), slowed by the test aid so the replay can be watched.
        var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M:write-back");
        await Tool.CheckAsync("nbdsh", "-c", $$"""
            h.connect_uri('{{node.UnixUri("vol0")}}')
            buf = bytearray(4096)
            for i in range(1600):
                buf[0:8] = i.to_bytes(8, 'little')
                h.pwrite(bytes(buf), (i * 7 % 16000) * 4096)
                h.flush()
            """);
        await node.KillAsync();
        await node.DisposeAsync();

        await using var recovering = NodeProcess.Launch(_dataDir, ["--volume", "vol0:64M:write-back", "--set", "actorcache.cache.recovery-delay=1s"]);
        await recovering.WaitAdminAsync(); // the admin listener does not wait for the volume
        var seen = "";
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            var (status, body) = await GetAsync(recovering, "/health");
            Assert.True(status == HttpStatusCode.ServiceUnavailable, $"/health answered {status} while the volume opens: {body}\n{recovering.Output}");
            seen = body;
            if (System.Text.RegularExpressions.Regex.IsMatch(body, @"^vol0: recovering the log: \d+% \(\S+ of \S+\), (about \d+ s left|time left unknown yet)\n$")) break;
            await Task.Delay(50);
        }
        Assert.Matches(@"^vol0: recovering the log: \d+% \(\S+ of \S+\)", seen);
        Assert.DoesNotContain("node serving", recovering.Output);

        // volume status and list say so, with the numbers; /metrics too.
        var info = await Cli.JsonAsync(recovering, "volume", "status", "vol0");
        Assert.Equal("recovering", info.GetProperty("state").GetString());
        Assert.False(info.GetProperty("online").GetBoolean());
        var progress = info.GetProperty("recovery");
        Assert.True(progress.GetProperty("totalBytes").GetInt64() > 0, info.ToString());
        Assert.InRange(progress.GetProperty("doneBytes").GetInt64(), 0, progress.GetProperty("totalBytes").GetInt64());
        Assert.InRange(progress.GetProperty("percent").GetInt32(), 0, 100);
        var listed = await Cli.CheckAsync(recovering, "volume", "list");
        Assert.Contains("recovering", listed);
        var metrics = await ScrapeAsync(recovering);
        Assert.Equal(1, metrics["actorcache_volume_recovering{volume=\"vol0\"}"]);
        Assert.True(metrics["actorcache_volume_recovery_total_bytes{volume=\"vol0\"}"] > 0);

        // A change is refused at once (409, exit 1), not left waiting for the open.
        var refused = await Cli.RefusedAsync(1, Cli.RunAsync(recovering, "volume", "mode", "vol0", "write-through"));
        Assert.Contains("volume vol0 is not open yet, it is recovering the log", refused);
        refused = await Cli.RefusedAsync(1, Cli.RunAsync(recovering, "volume", "resize", "vol0", "--size", "128M"));
        Assert.Contains("is not open yet", refused);

        // Once open: healthy, online, served.
        await recovering.WaitVolumesOpenAsync(TimeSpan.FromSeconds(120));
        await recovering.WaitJoinedAsync();
        Assert.Equal((HttpStatusCode.OK, "ok\n"), await GetAsync(recovering, "/health"));
        info = await Cli.JsonAsync(recovering, "volume", "status", "vol0");
        Assert.Equal("online", info.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, info.GetProperty("recovery").ValueKind);
        var size = await Tool.CheckAsync("nbdinfo", "--size", recovering.UnixUri("vol0"));
        Assert.Equal((64L << 20).ToString(CultureInfo.InvariantCulture), size.Trim());
    }

    [Fact]
    public async Task Metrics_follow_writes_and_flushes_health_is_ok_and_admin_url_goes_with_the_node()
    {
        var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:256M:write-back", "--volume", "plain:64M:pass-through");
        Assert.StartsWith("http://127.0.0.1:", node.AdminUrl);
        Assert.Contains($"admin listening on {node.AdminUrl}", node.Output);

        var before = await ScrapeAsync(node);
        const string vol0 = "{volume=\"vol0\"}";
        Assert.Equal(1, before["actorcache_volume_online" + vol0]);
        Assert.Equal(0, before["actorcache_volume_degraded" + vol0]);
        Assert.Equal(0, before["actorcache_volume_read_only" + vol0]);
        Assert.Equal(1, before["actorcache_volume_mode{volume=\"vol0\",mode=\"write-back\"}"]);
        Assert.Equal(0, before["actorcache_volume_mode{volume=\"vol0\",mode=\"pass-through\"}"]);
        Assert.Equal(1, before["actorcache_volume_mode{volume=\"plain\",mode=\"pass-through\"}"]);
        Assert.Equal(0, before["actorcache_cache_cached_blocks" + vol0]);
        Assert.Equal(0, before["actorcache_cache_retention_shrinks_total" + vol0]);
        Assert.Equal(0, before["actorcache_log_corrupt_records_total" + vol0]);
        Assert.Equal((256 << 20) / 4096, before["actorcache_ring_slots"]); // the default ring-size, 256M
        // A pass-through volume has no cache, so no cache series at all rather than misleading zeros.
        Assert.DoesNotContain("actorcache_log_batches_written_total{volume=\"plain\"}", before.Keys);

        var image = Path.Combine(_dataDir, "in.img");
        await File.WriteAllBytesAsync(image, Tool.RandomBytes(8 << 20, 11));
        await Tool.CheckAsync("nbdcopy", "--flush", image, node.UnixUri("vol0"));

        var after = await ScrapeAsync(node);
        Assert.True(after["actorcache_log_batches_written_total" + vol0] > before["actorcache_log_batches_written_total" + vol0],
            "the copy was written to the log in batches");
        Assert.True(after["actorcache_log_syncs_total" + vol0] > before["actorcache_log_syncs_total" + vol0], "the FLUSH synced the log");
        Assert.True(after["actorcache_log_generation" + vol0] > before["actorcache_log_generation" + vol0], "the FLUSH closed a generation");
        // Retention is an hour by default, so all 8 MiB are still in the log and none of it on the backing.
        Assert.Equal((8 << 20) / 4096, after["actorcache_cache_cached_blocks" + vol0]);
        Assert.True(after["actorcache_log_bytes" + vol0] >= 8 << 20);
        Assert.Equal(0, after["actorcache_cache_blocks_destaged_total" + vol0]);
        Assert.Equal(after["actorcache_ring_slots"], after["actorcache_ring_free_slots"]); // every slot is released once logged

        await node.WaitJoinedAsync();
        Assert.Equal((HttpStatusCode.OK, "ok\n"), await GetAsync(node, "/health"));
        Assert.Equal((HttpStatusCode.OK, "ok\n"), await GetAsync(node, "/health/live"));
        Assert.True(File.Exists(node.AdminUrlFile));

        Assert.Equal(0, (await node.StopAsync()).ExitCode);
        await node.DisposeAsync();
        Assert.False(File.Exists(node.AdminUrlFile), "admin.url is removed on a clean stop");
    }

    [Fact]
    public async Task A_volume_with_a_damaged_log_record_makes_health_503_and_says_why()
    {
        string[] volume = ["--volume", "v:64M:write-back"];
        await using (var node = await NodeProcess.StartAsync(_dataDir, volume))
        {
            // Two flushed batches: the second one's durable-through field proves the first was once complete.
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 1M", "-c", "flush", "-c", "write -P 0x22 1M 1M", "-c", "flush",
                node.TcpUri("v"));
            Assert.Equal(0, (await node.StopAsync()).ExitCode); // retention is an hour: both batches stay in the log
        }

        // A media error in the first batch's data (the header block comes first, then the data blocks).
        var segment = Path.Combine(_dataDir, "log", "v", "segment-0000000000.log");
        await using (var file = File.Open(segment, FileMode.Open))
        {
            var magic = new byte[8];
            await file.ReadExactlyAsync(magic);
            Assert.Equal("ACLOGBT1"u8.ToArray(), magic);
            file.Position = 4096 + 100;
            var b = file.ReadByte();
            file.Position = 4096 + 100;
            file.WriteByte((byte)(b ^ 0x40));
        }

        await using (var node = await NodeProcess.StartAsync(_dataDir, volume))
        {
            await node.WaitJoinedAsync(); // the only line is then the volume's
            var (status, body) = await GetAsync(node, "/health");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.StartsWith("v: degraded, read-only due to log corruption: ", body);
            Assert.Single(body.TrimEnd('\n').Split('\n'));
            Assert.Equal((HttpStatusCode.OK, "ok\n"), await GetAsync(node, "/health/live")); // alive: no reason to restart it

            var metrics = await ScrapeAsync(node);
            Assert.Equal(1, metrics["actorcache_volume_online{volume=\"v\"}"]);
            Assert.Equal(1, metrics["actorcache_volume_degraded{volume=\"v\"}"]);
            Assert.Equal(1, metrics["actorcache_volume_read_only{volume=\"v\"}"]);
            Assert.Equal(1, metrics["actorcache_log_corrupt_records_total{volume=\"v\"}"]);
        }
    }

    [Fact]
    public async Task Busy_admin_address_exits_1_and_names_the_setting()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var node = NodeProcess.Launch(_dataDir, [], admin: $"127.0.0.1:{port}");
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains($"cannot listen on admin address 127.0.0.1:{port}: address already in use", node.Output);
        Assert.Contains("--admin", node.Output);
        await node.DisposeAsync();
        Assert.False(File.Exists(Path.Combine(_dataDir, "admin.url")));
    }

    [Fact]
    public async Task Bad_admin_address_exits_2()
    {
        var node = NodeProcess.Launch(_dataDir, [], admin: "localhost");
        Assert.Equal(2, await node.WaitExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("--admin: 'localhost' needs a host and a port", node.Output);
        await node.DisposeAsync();
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")), "nothing is created");
    }
}
