using System.Globalization;
using System.Net;

namespace ActorCache.Integration.Tests;

/// <summary>What a running node does about a volume it cannot serve safely, and about space and durability it cannot get.</summary>
public sealed class VolumeFaultTests : IDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(NodeProcess node, string path)
    {
        using var response = await Http.GetAsync(node.AdminUrl + path);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task<double> MetricAsync(NodeProcess node, string series)
    {
        var (_, body) = await GetAsync(node, "/metrics");
        var line = body.Split('\n').Single(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return double.Parse(line[(series.Length + 1)..], CultureInfo.InvariantCulture);
    }

    [Theory]
    [InlineData("deleted", "its backing {0} is missing (it was there when the volume was defined); restore the file")]
    [InlineData("emptied", "backing {0} is 0 bytes, shorter than the volume's 67108864")]
    public async Task A_volume_whose_backing_is_gone_or_replaced_comes_up_offline_and_the_others_serve(string what, string reason)
    {
        await using (var node = await NodeProcess.StartAsync(_dataDir, "--volume", "a:64M", "--volume", "b:64M"))
        {
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x7a 0 1M", "-c", "flush", node.TcpUri("a"));
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x7b 0 1M", "-c", "flush", node.TcpUri("b"));
            Assert.Equal(0, (await node.StopAsync()).ExitCode);
        }
        var backing = Path.Combine(_dataDir, "volumes", "b.img");
        File.Delete(backing);
        if (what == "emptied") await File.WriteAllBytesAsync(backing, []);
        reason = string.Format(CultureInfo.InvariantCulture, reason, backing);

        await using (var node = await NodeProcess.StartAsync(_dataDir))
        {
            // The volume's actor logs it; the node's "serving" line, which the start waits for, may come first.
            await node.ShowsAsync($"volume b is OFFLINE: {reason}");
            Assert.Contains($"volume b is OFFLINE: {reason}", node.Output);
            var (status, body) = await GetAsync(node, "/health");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.StartsWith($"b: offline: {reason}", body);
            Assert.Equal(0, await MetricAsync(node, "actorcache_volume_online{volume=\"b\"}"));
            Assert.Equal(1, await MetricAsync(node, "actorcache_volume_online{volume=\"a\"}"));

            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0x7a 0 1M", node.TcpUri("a")); // the other volume serves
            // libnbd shows the server's error text in its debug output only.
            var refused = await Tool.RunAsync("env", ["LIBNBD_DEBUG=1", "nbdinfo", node.TcpUri("b")]);
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains($"server error message: export 'b' is unavailable: volume b is offline: {reason}", refused.Output);
            if (what == "emptied") Assert.Equal(0, new FileInfo(backing).Length); // refused, not silently extended with zeroes
        }
    }

    [Fact]
    public async Task A_log_file_system_smaller_than_the_logs_may_grow_is_warned_about_and_the_log_capacity_reduced()
    {
        await using var tmpfs = await Tmpfs.MountAsync("100m");
        string[] args = ["--volume", "vol0:64M", "--set", $"actorcache.cache.log-dir={tmpfs.Path}",
            "--set", "actorcache.cache.segment-size=4M", "--set", "actorcache.cache.max-batch=1M"];
        await using var node = await NodeProcess.StartAsync(_dataDir, args);
        Assert.Contains($"log directory {tmpfs.Path}: its file system has 100M free, less than the 2G of cache.log-capacity", node.Output);
        Assert.Contains("log capacity reduced to what can be held: vol0 100M (retention cap 50M)", node.Output);

        // Writes and reads through the reduced log work.
        var image = Path.Combine(_dataDir, "in.img");
        await File.WriteAllBytesAsync(image, Tool.RandomBytes(16 << 20, 9));
        await Tool.CheckAsync("nbdcopy", "--flush", image, node.UnixUri("vol0"));
        var back = Path.Combine(_dataDir, "out.img");
        await Tool.CheckAsync("nbdcopy", node.UnixUri("vol0"), back);
        var written = await File.ReadAllBytesAsync(image);
        var read = await File.ReadAllBytesAsync(back);
        Assert.True(written.AsSpan().SequenceEqual(read.AsSpan(0, written.Length)));
    }

    /// <summary>
    /// The issue's repro with default settings: a 100 MiB tmpfs log directory (room for one 64 MiB
    /// segment) and nbdcopy --flush of 256 MiB. Writes used to hang on ENOSPC and a stop dropped them;
    /// now the log is one segment, reused as it is destaged: everything completes, reads back equal,
    /// retention shrinks with its warning and metric, and the node stops cleanly.
    /// </summary>
    [Fact]
    public async Task A_log_directory_on_a_100M_file_system_takes_256M_of_flushed_writes_with_default_settings()
    {
        await using var tmpfs = await Tmpfs.MountAsync("100m");
        var node = await NodeProcess.StartAsync(_dataDir, "--set", $"actorcache.cache.log-dir={tmpfs.Path}");
        Assert.Contains("log capacity reduced to what can be held: vol0 64M (retention cap 0)", node.Output);
        var image = Path.Combine(_dataDir, "in.img");
        await File.WriteAllBytesAsync(image, Tool.RandomBytes(256 << 20, 10));
        await Tool.CheckAsync("nbdcopy", "--flush", image, node.UnixUri("vol0"));
        var back = Path.Combine(_dataDir, "out.img");
        await Tool.CheckAsync("nbdcopy", node.UnixUri("vol0"), back);
        var written = await File.ReadAllBytesAsync(image);
        var readBack = await File.ReadAllBytesAsync(back);
        Assert.True(written.AsSpan().SequenceEqual(readBack.AsSpan(0, 256 << 20)));
        var metrics = await node.MetricsAsync();
        Assert.True(metrics["actorcache_cache_retention_shrinks_total{volume=\"vol0\"}"] > 0, "retention never shrank");
        Assert.Contains("retention shrinks", node.Output);

        var (exit, _) = await node.StopAsync(TimeSpan.FromSeconds(60));
        await node.DisposeAsync();
        Assert.Equal(0, exit);
        Assert.Contains("stopped cleanly", node.Output);
        await using var again = await NodeProcess.StartAsync(_dataDir, "--set", $"actorcache.cache.log-dir={tmpfs.Path}");
        var afterRestart = Path.Combine(_dataDir, "after.img");
        await Tool.CheckAsync("nbdcopy", again.UnixUri("vol0"), afterRestart);
        var restarted = await File.ReadAllBytesAsync(afterRestart);
        Assert.True(written.AsSpan().SequenceEqual(restarted.AsSpan(0, 256 << 20)));
    }

    [Fact]
    public async Task A_stop_that_cannot_make_acknowledged_writes_durable_says_so_names_the_volume_and_exits_1()
    {
        // Log and backing on one small file system that is then filled: neither can take the data.
        await using var tmpfs = await Tmpfs.MountAsync("48m");
        var node = await NodeProcess.StartAsync(_dataDir, "--volume", $"v:16M:backing={Path.Combine(tmpfs.Path, "v.img")}",
            "--set", $"actorcache.cache.log-dir={Path.Combine(tmpfs.Path, "log")}", "--set", "actorcache.cache.segment-size=1M",
            "--set", "actorcache.cache.max-batch=64K", "--set", "actorcache.cache.log-capacity=8M", "--set", "actorcache.cache.log-full-policy=fail");
        await tmpfs.FillAsync();
        // Acknowledged (the ring took them) but never flushed; the log cannot take them any more.
        await Tool.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x3d 0 4M", node.TcpUri("v")]);
        var (exit, _) = await node.StopAsync(TimeSpan.FromSeconds(90));
        await node.DisposeAsync();
        Assert.Equal(1, exit);
        Assert.Matches(@"volume v: [1-9][0-9]* bytes of acknowledged writes could not be made durable", node.Output);
        Assert.DoesNotContain("stopped cleanly", node.Output);
    }
}
