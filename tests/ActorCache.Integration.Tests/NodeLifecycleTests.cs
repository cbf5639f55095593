using System.Net.Sockets;
using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>Starting, restarting and stopping the real node, and everything a user can get wrong on the way.</summary>
public sealed class NodeLifecycleTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static async Task<List<string>> ExportNames(NodeProcess node)
    {
        var json = await Tool.CheckAsync("nbdinfo", "--list", "--json", node.TcpUri(""));
        return JsonDocument.Parse(json).RootElement.GetProperty("exports").EnumerateArray()
            .Select(e => e.GetProperty("export-name").GetString()!).Order().ToList();
    }

    [Fact]
    public async Task First_start_creates_vol0_and_a_restart_serves_every_volume_with_its_data()
    {
        await using (var node = await NodeProcess.StartAsync(_dataDir))
        {
            Assert.Equal(["vol0"], await ExportNames(node));
            var info = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--json", node.UnixUri("vol0"))).RootElement;
            Assert.Equal(1L << 30, info.GetProperty("exports")[0].GetProperty("export-size").GetInt64());
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5c 4096 65536", node.TcpUri("vol0"));
            Assert.Equal(0, (await node.StopAsync()).ExitCode);
        }
        Assert.True(File.Exists(Path.Combine(_dataDir, "metadata.db")), "metadata lives in SQLite in the data directory");
        Assert.True(File.Exists(Path.Combine(_dataDir, "volumes", "vol0.img")));

        await using (var node = await NodeProcess.StartAsync(_dataDir, "--volume", "extra:128M"))
        {
            Assert.Equal(["extra", "vol0"], await ExportNames(node));
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0x5c 4096 65536", node.TcpUri("vol0"));
        }
        await using (var node = await NodeProcess.StartAsync(_dataDir))
            Assert.Equal(["extra", "vol0"], await ExportNames(node));
    }

    [Theory]
    [InlineData("vol1:12Q", "unknown unit")]
    [InlineData("vol1:1001", "not a multiple of 4 KiB")]
    [InlineData("bad/name:1G", "not allowed")]
    public async Task Bad_volume_flag_exits_2_with_a_clear_message_and_creates_nothing(string spec, string message)
    {
        var node = NodeProcess.Launch(_dataDir, ["--volume", spec]);
        Assert.Equal(2, await node.WaitExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains(message, node.Output);
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")));
        await node.DisposeAsync();
    }

    [Theory]
    [InlineData("--set", "actorcache.cache.ringsize=1G", "did you mean actorcache.cache.ring-size?")]
    [InlineData("--set", "actorcache.nbd.stop-grace=banana", "actorcache.nbd.stop-grace = banana is not a duration")]
    [InlineData("--set", "actorcache.nbd.max-in-flight-per-connection=lots", "use a whole number from 1 to 4096")]
    [InlineData("--config", "/dev/null", "sets nothing")]
    [InlineData("--config", "/tmp", "is a directory")]
    [InlineData("--config", "UNCLOSED", "is never closed")]
    [InlineData("--config", "GARBAGE", "is not valid HOCON")]
    [InlineData("--data-dir", "", "--data-dir names no directory")]
    [InlineData("--bogus", "flag", "Unrecognized command or argument '--bogus'")]
    [InlineData("--volume", "v1:1P:bogus", "unknown mode")]
    public async Task Configuration_and_usage_mistakes_exit_2_with_one_line_and_no_stack_trace(string flag, string value, string message)
    {
        if (value is "UNCLOSED" or "GARBAGE")
        {
            var file = Path.Combine(_dataDir, "bad.conf");
            await File.WriteAllTextAsync(file, value == "UNCLOSED" ? "actorcache { nbd { stop-grace = 1s }\n" : "{{{{ ::: }");
            value = file;
        }
        string output;
        if (flag == "--data-dir")
        {
            // The node's own --data-dir would clash with this one: run it bare.
            var result = await Tool.RunAsync("dotnet", [NodeProcess.NodeDll, "serve", flag, value], TimeSpan.FromSeconds(30));
            Assert.Equal(2, result.ExitCode);
            output = result.Output;
        }
        else
        {
            var node = NodeProcess.Launch(_dataDir, [flag, value]);
            Assert.Equal(2, await node.WaitExitAsync(TimeSpan.FromSeconds(30)));
            await node.DisposeAsync();
            output = node.Output;
        }
        Assert.Contains(message, output);
        Assert.DoesNotContain("   at ", output);
        Assert.DoesNotContain("Exception", output);
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")), "nothing is created");
    }

    [Fact]
    public async Task Duplicate_volume_name_exits_2()
    {
        var node = NodeProcess.Launch(_dataDir, ["--volume", "a:1G", "--volume", "a:2G"]);
        Assert.Equal(2, await node.WaitExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("given twice", node.Output);
        await node.DisposeAsync();
    }

    [Fact]
    public async Task Unusable_backing_path_fails_and_leaves_no_half_created_volume()
    {
        var node = NodeProcess.Launch(_dataDir, ["--volume", "good:64M", "--volume", "bad:64M:backing=/nonexistent-dir/x.img"]);
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("/nonexistent-dir", node.Output);
        await node.DisposeAsync();
        Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "good.img")), "the good volume's backing was rolled back");

        await using var again = await NodeProcess.StartAsync(_dataDir);
        Assert.Equal(["vol0"], await ExportNames(again)); // neither volume was recorded
    }

    [Fact]
    public async Task Existing_volume_cannot_be_silently_resized()
    {
        await using (var node = await NodeProcess.StartAsync(_dataDir, "--volume", "v:64M")) { }
        var clash = NodeProcess.Launch(_dataDir, ["--volume", "v:128M"]);
        Assert.Equal(1, await clash.WaitExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("cannot be redefined", clash.Output);
        await clash.DisposeAsync();
    }

    [Fact]
    public async Task A_restart_in_another_mode_drains_the_log_and_keeps_the_data()
    {
        await using (var node = await NodeProcess.StartAsync(_dataDir, "--volume", "v:64M:write-back"))
        {
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 1048576", "-c", "flush", node.TcpUri("v"));
            await node.KillAsync(); // all of it is in the log only
        }
        await using (var node = await NodeProcess.StartAsync(_dataDir, "--volume", "v:64M:pass-through"))
        {
            Assert.True(await node.ShowsAsync("draining"), $"no drain logged:\n{node.Output}");
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0x3c 0 1048576", node.TcpUri("v"));
        }
        // The backing file itself holds the data now, and the mode change was recorded.
        var backing = await File.ReadAllBytesAsync(Path.Combine(_dataDir, "volumes", "v.img"));
        Assert.All(backing.AsSpan(0, 1 << 20).ToArray(), b => Assert.Equal(0x3c, b));
        await using (var node = await NodeProcess.StartAsync(_dataDir))
            Assert.True(await node.ShowsAsync("64M pass-through"), $"the volume did not come back in pass-through:\n{node.Output}");
    }

    [Fact]
    public async Task A_data_directory_serves_one_node_at_a_time()
    {
        await using var first = await NodeProcess.StartAsync(_dataDir);
        var second = NodeProcess.Launch(_dataDir, []);
        Assert.Equal(1, await second.WaitExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("in use by another running node", second.Output);
        Assert.Contains($"pid {first.Pid}", second.Output);
        await second.DisposeAsync();
        Assert.Equal(["vol0"], await ExportNames(first)); // the first one is unharmed
    }

    [Fact]
    public async Task Busy_listen_address_is_reported()
    {
        using var squatter = new TcpListener(System.Net.IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((System.Net.IPEndPoint)squatter.LocalEndpoint).Port;
        var node = NodeProcess.Launch(_dataDir, [], port: port);
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains($"cannot listen on tcp://127.0.0.1:{port}", node.Output);
        await node.DisposeAsync();
    }

    [Fact]
    public async Task Sigterm_stops_within_seconds_while_clients_stay_connected()
    {
        var node = await NodeProcess.StartAsync(_dataDir);
        // Two clients that never leave on their own: one idle, one mid-way through a stream of writes.
        // The idle one waits on its socket (not in a sleep), so it notices the server closing the connection at once.
        const string waitForClose = "try:\n    while not (h.aio_is_dead() or h.aio_is_closed()): h.poll(1000)\nexcept nbd.Error:\n    pass\n";
        var idle = Tool.RunAsync("nbdsh", ["-u", node.UnixUri(), "-c", waitForClose], TimeSpan.FromMinutes(2));
        var busy = Tool.RunAsync("fio", ["--name=busy", "--ioengine=nbd", $"--uri={node.UnixUri()}", "--rw=randwrite", "--bs=4k",
            "--iodepth=8", "--size=64m", "--time_based", "--runtime=60"], TimeSpan.FromMinutes(2));
        await Task.Delay(1500);
        var (exit, took) = await node.StopAsync();
        Assert.True(exit == 0, $"exit {exit}:\n{node.Output}");
        Assert.True(took < TimeSpan.FromSeconds(20), $"stop took {took}:\n{node.Output}"); // loosely: a busy machine (stop-grace is 5 s)
        Assert.Contains("stopped cleanly", node.Output);
        // The volume was closed by the node (flushed, cache actors stopped in order), not torn down by the actor system.
        Assert.Contains("volume vol0 closed", node.Output);
        Assert.DoesNotContain("stopped without being closed", node.Output);
        Assert.True(node.Output.IndexOf("volume vol0 closed", StringComparison.Ordinal) <
                    node.Output.IndexOf("CoordinatedShutdown invoked", StringComparison.Ordinal), "volumes close before the actor system stops:\n" + node.Output);
        await Task.WhenAll(idle, busy).WaitAsync(TimeSpan.FromSeconds(30)); // both clients see the connection end, long before their minute is up
        await node.DisposeAsync();
        Assert.False(File.Exists(Path.Combine(_dataDir, "nbd.sock")), "the Unix socket is removed on stop");

        // One line format for everything, Akka included, to the very last line; nothing misleading.
        var format = new System.Text.RegularExpressions.Regex(@"^\d\d:\d\d:\d\d\.\d{3} (dbug|info|warn|fail|crit): \S+\[\d+\] ");
        var odd = node.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !format.IsMatch(l)).ToList();
        Assert.True(odd.Count == 0, "lines in another format:\n" + string.Join('\n', odd));
        Assert.DoesNotContain("[INFO][", node.Output);
        Assert.DoesNotContain("No seed-nodes configured", node.Output);
        // Ours are the ones that matter; the cluster daemon's own bookkeeping racing its publisher's stop (Akka.Cluster's
        // InternalClusterAction), and distributed data's replicator and the split-brain resolver's timers firing at their own
        // actors as they stop (DeltaPropagationTick, SplitBrainResolverBase+Tick: once in a CI run) are Akka's shutdown order,
        // not lost messages of ours.
        var deadLetters = node.Output.Split('\n')
            .Where(l => (l.Contains("dead letter") || l.Contains("not delivered")) && !l.Contains("Akka.Cluster.InternalClusterAction") &&
                        !l.Contains("Message [DeltaPropagationTick]") && !l.Contains("Akka.Cluster.SBR.SplitBrainResolverBase+Tick")).ToList();
        Assert.True(deadLetters.Count == 0, "dead letters logged:\n" + string.Join('\n', deadLetters));
        Assert.Contains("info: Akka.Cluster[0] Cluster Node", node.Output);
        // A client that leaves is logged with how long it stayed and how much it asked (the idle one at least: it has nothing in flight).
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(node.Output, @"NBD client unix left vol0 after \d+\.\d s and \d+ requests: "), node.Output);
    }

    [Fact]
    public async Task Sigterms_after_the_first_do_not_cut_the_stop_short()
    {
        // As in Kubernetes, where the preStop hook's `cluster leave` stops the node and the kubelet's SIGTERM follows: every
        // signal after the first must leave the stop to end on its own, also while the host and the runtime close.
        var node = await NodeProcess.StartAsync(_dataDir);
        var signals = await Task.Run(() =>
        {
            var sent = 0;
            while (node.Signal(15))
            {
                sent++;
                Thread.Sleep(1);
            }
            return sent;
        });
        var exit = await node.WaitExitAsync(TimeSpan.FromSeconds(30));
        Assert.True(exit == 0, $"exit {exit} after {signals} SIGTERMs:\n{node.Output}");
        Assert.Contains("stopped cleanly", node.Output);
    }

    [Fact]
    public async Task A_killed_test_node_leaves_no_diagnostics_files_in_tmp()
    {
        var node = await NodeProcess.StartAsync(_dataDir);
        var pid = node.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await node.KillAsync();
        await node.DisposeAsync();
        // The runtime's diagnostics IPC (clr-debug-pipe-PID-*, dotnet-diagnostic-PID-*) is off for test nodes:
        // a SIGKILLed process cannot remove its own.
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(Path.GetTempPath()),
            f => Path.GetFileName(f).StartsWith("clr-debug-pipe-" + pid + "-", StringComparison.Ordinal) ||
                 Path.GetFileName(f).StartsWith("dotnet-diagnostic-" + pid + "-", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_client_that_leaves_is_logged_with_its_duration_and_request_count()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir);
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", "-c", "read -P 0x11 0 64k", node.TcpUri("vol0"));
        // Logged once the server's receive loop has ended, then through the logger and the output pipe: waited for.
        const string Left = @"NBD client 127\.0\.0\.1:\d+ left vol0 after \d+\.\d s and \d+ requests: disconnected";
        for (var waited = 0; !System.Text.RegularExpressions.Regex.IsMatch(node.Output, Left) && waited < 300; waited++) await Task.Delay(100);
        Assert.Matches(Left, node.Output);
    }

    [Fact]
    public async Task Hostile_clients_do_not_disturb_a_working_one()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir);
        var copy = Tool.RunAsync("fio", ["--name=steady", "--ioengine=nbd", $"--uri={node.UnixUri()}", "--rw=randrw", "--bs=4k",
            "--iodepth=8", "--size=32m", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1"], TimeSpan.FromMinutes(3));
        var random = new Random(5);
        for (var i = 0; i < 200; i++)
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(node.SocketPath));
            if (i % 20 == 0) await Task.Delay(10); // churn, not a flood: the backlog is the kernel's, not ours
            var garbage = new byte[random.Next(1, 300)];
            random.NextBytes(garbage);
            if (i % 3 != 0) await socket.SendAsync(garbage);
        }
        var result = await copy;
        Assert.True(result.ExitCode == 0, result.Output);
        await Tool.CheckAsync("nbdinfo", node.UnixUri());
    }
}
