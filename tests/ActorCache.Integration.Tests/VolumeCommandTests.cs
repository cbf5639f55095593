using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// <c>actorcache volume ...</c> end to end: the real command line against a real node, checked with NBD
/// clients nobody here wrote (nbdinfo, nbdcopy, qemu-io, nbdsh) and by restarting the node.
/// </summary>
public sealed class VolumeCommandTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static async Task<long> ExportSizeAsync(NodeProcess node, string export) =>
        JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--json", node.UnixUri(export))).RootElement
            .GetProperty("exports")[0].GetProperty("export-size").GetInt64();

    private static async Task<List<string>> ExportNamesAsync(NodeProcess node) =>
        JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--list", "--json", node.TcpUri(""))).RootElement.GetProperty("exports")
            .EnumerateArray().Select(e => e.GetProperty("export-name").GetString()!).Order().ToList();

    /// <summary>The whole volume copied out begins with what was copied in, and is zeroes after it.</summary>
    private static async Task AssertStartsWithAsync(string volume, string image)
    {
        var all = await File.ReadAllBytesAsync(volume);
        var expected = await File.ReadAllBytesAsync(image);
        Assert.True(all.AsSpan(0, expected.Length).SequenceEqual(expected), "the data copied in reads back");
        Assert.True(all.AsSpan(expected.Length).IndexOfAnyExcept((byte)0) < 0, "nothing else was written");
    }

    private static JsonElement Volume(JsonElement listing, string name) =>
        listing.GetProperty("volumes").EnumerateArray().Single(v => v.GetProperty("name").GetString() == name);

    [Fact]
    public async Task Create_serves_the_volume_at_once_list_and_status_show_it_and_a_restart_keeps_it_with_its_data()
    {
        await using (var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M"))
        {
            var created = await Cli.JsonAsync(node, "volume", "create", "v1", "--size", "64M");
            Assert.Equal("v1", created.GetProperty("name").GetString());
            Assert.Equal(64L << 20, created.GetProperty("size").GetInt64());
            Assert.Equal("write-back", created.GetProperty("mode").GetString());
            Assert.True(created.GetProperty("online").GetBoolean());

            // Served at once, with its size, and data goes in and comes out.
            Assert.Equal(["v1", "vol0"], await ExportNamesAsync(node));
            Assert.Equal(64L << 20, await ExportSizeAsync(node, "v1"));
            var image = Path.Combine(_dataDir, "in.img");
            var back = Path.Combine(_dataDir, "out.img");
            await File.WriteAllBytesAsync(image, Tool.RandomBytes(8 << 20, 21));
            await Tool.CheckAsync("nbdcopy", "--flush", image, node.UnixUri("v1"));
            await Tool.CheckAsync("nbdcopy", node.TcpUri("v1"), back);
            await AssertStartsWithAsync(back, image);

            // list --json: every documented field, with what the copy left in the cache.
            var v1 = Volume(await Cli.JsonAsync(node, "volume", "list"), "v1");
            Assert.Equal(64L << 20, v1.GetProperty("size").GetInt64());
            Assert.Equal("write-back", v1.GetProperty("mode").GetString());
            Assert.False(v1.GetProperty("readOnly").GetBoolean());
            Assert.True(v1.GetProperty("online").GetBoolean());
            Assert.Equal(JsonValueKind.Null, v1.GetProperty("offlineReason").ValueKind);
            Assert.Equal(JsonValueKind.Null, v1.GetProperty("degraded").ValueKind);
            Assert.Equal(Path.Combine(_dataDir, "volumes", "v1.img"), v1.GetProperty("backing").GetString());
            Assert.True(v1.GetProperty("backingCreated").GetBoolean());
            Assert.True(v1.GetProperty("generation").GetInt64() > 1, "the FLUSH closed a generation");
            Assert.Equal(8L << 20, v1.GetProperty("cachedBytes").GetInt64()); // retention is an hour: all of it is in the log
            Assert.True(v1.GetProperty("logBytes").GetInt64() >= 8L << 20);
            Assert.Equal(0, v1.GetProperty("clients").GetInt32());
            Assert.Empty(v1.GetProperty("health").EnumerateArray());
            Assert.Equal((8L << 20) / 4096, v1.GetProperty("cache").GetProperty("cachedBlocks").GetInt64());

            var status = await Cli.JsonAsync(node, "volume", "status", "v1");
            Assert.Equal(v1.GetProperty("backing").GetString(), status.GetProperty("backing").GetString());
            Assert.True(status.GetProperty("cache").GetProperty("batchesWritten").GetInt64() > 0);
            Assert.True(status.GetProperty("cache").GetProperty("syncs").GetInt64() > 0);

            // The same for people: a table, and the details.
            var table = await Cli.CheckAsync(node, "volume", "list");
            var row = @"│ v1\s+│\s+64M │ write-back\s+│ online\s+│\s+0 │\s+8M │\s+" +
                      System.Text.RegularExpressions.Regex.Escape(ActorCache.Cli.SizeText.Of(v1.GetProperty("logBytes").GetInt64())) + " │ " +
                      System.Text.RegularExpressions.Regex.Escape(v1.GetProperty("backing").GetString()!);
            Assert.True(System.Text.RegularExpressions.Regex.IsMatch(table, row), table);
            Assert.Contains("│ vol0 ", table);
            var details = await Cli.CheckAsync(node, "volume", "status", "v1");
            Assert.Contains("size        64M (67,108,864 bytes)", details);
            Assert.Contains("cached      8M in the ring and the log", details);
            Assert.Matches(@"health\s+ok", details);
            Assert.Contains("created volume v1: 64M write-back", node.Output);
        }

        await using (var node = await NodeProcess.StartAsync(_dataDir))
        {
            Assert.Equal(["v1", "vol0"], await ExportNamesAsync(node));
            var back = Path.Combine(_dataDir, "again.img");
            await Tool.CheckAsync("nbdcopy", node.UnixUri("v1"), back);
            await AssertStartsWithAsync(back, Path.Combine(_dataDir, "in.img"));
        }
    }

    [Fact]
    public async Task Mode_switches_write_back_to_write_through_and_back_live_and_the_data_stays()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M");
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x31 0 4M", "-c", "flush", node.TcpUri("vol0"));
        Assert.Equal(4L << 20, (await Cli.JsonAsync(node, "volume", "status", "vol0")).GetProperty("cachedBytes").GetInt64());

        var through = await Cli.JsonAsync(node, "volume", "mode", "vol0", "write-through");
        Assert.Equal("write-through", through.GetProperty("mode").GetString());
        Assert.Equal(0, through.GetProperty("cachedBytes").GetInt64()); // drained to the backing first
        var backing = await File.ReadAllBytesAsync(Path.Combine(_dataDir, "volumes", "vol0.img"));
        Assert.All(backing.AsSpan(0, 4 << 20).ToArray(), b => Assert.Equal(0x31, b));
        Assert.Contains("volume vol0 is now write-through", await Cli.CheckAsync(node, "volume", "mode", "vol0", "write-through"));

        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x32 4M 1M", node.TcpUri("vol0")); // straight to the backing
        Assert.Equal(0, (await Cli.JsonAsync(node, "volume", "status", "vol0")).GetProperty("cachedBytes").GetInt64());

        Assert.Equal("volume vol0 is now write-back\n", await Cli.CheckAsync(node, "volume", "mode", "vol0", "write-back"));
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x33 5M 1M", "-c", "flush", node.TcpUri("vol0"));
        Assert.Equal(1L << 20, (await Cli.JsonAsync(node, "volume", "status", "vol0")).GetProperty("cachedBytes").GetInt64());
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0x31 0 4M", "-c", "read -P 0x32 4M 1M", "-c", "read -P 0x33 5M 1M",
            node.TcpUri("vol0"));

        // The switch is recorded: a restart comes back in the last mode.
        await Cli.CheckAsync(node, "volume", "mode", "vol0", "write-through");
        Assert.Equal(0, (await node.StopAsync()).ExitCode);
        await using var restarted = await NodeProcess.StartAsync(_dataDir);
        Assert.Equal("write-through", (await Cli.JsonAsync(restarted, "volume", "status", "vol0")).GetProperty("mode").GetString());
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0x33 5M 1M", restarted.TcpUri("vol0"));
    }

    [Theory]
    [InlineData("write-back")]
    [InlineData("pass-through")]
    public async Task Resize_grows_online_connected_clients_keep_their_size_new_ones_see_the_new_and_shrinking_is_refused(string mode)
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", $"v:64M:{mode}");
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x41 63M 1M", "-c", "flush", node.TcpUri("v")); // the last MiB

        // A client connected across the resize: it negotiated 64M and keeps it.
        var flag = Path.Combine(_dataDir, "resized");
        var connected = Tool.RunAsync("nbdsh", ["-u", node.UnixUri("v"), "-c",
            $"import os, time\nprint(h.get_size(), flush=True)\nwhile not os.path.exists('{flag}'): time.sleep(0.05)\nprint(h.get_size())\n" +
            "h.pwrite(b'\\x42' * 4096, 0)\nh.flush()"]);
        await WaitForClientsAsync(node, "v", 1);

        var resized = await Cli.RunAsync(node, "volume", "resize", "v", "--size", "192M");
        Assert.True(resized.ExitCode == 0, resized.Output);
        Assert.Equal("volume v is 192M; its 1 connected client(s) see the new size when they reconnect\n", resized.Stdout);
        await File.WriteAllTextAsync(flag, "");
        var sizes = await connected;
        Assert.True(sizes.ExitCode == 0, sizes.Output);
        Assert.Equal([$"{64 << 20}", $"{64 << 20}"], sizes.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        // New connections see the new size; the old data is there; the new blocks take writes.
        Assert.Equal(192L << 20, await ExportSizeAsync(node, "v"));
        Assert.Equal(192L << 20, new FileInfo(Path.Combine(_dataDir, "volumes", "v.img")).Length);
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0x41 63M 1M", "-c", "read -P 0x42 0 4k", "-c", "read -P 0 64M 1M",
            "-c", "write -P 0x43 64M 1M", "-c", "write -P 0x44 191M 1M", "-c", "flush",
            "-c", "read -P 0x43 64M 1M", "-c", "read -P 0x44 191M 1M", node.TcpUri("v"));
        Assert.Equal(192L << 20, (await Cli.JsonAsync(node, "volume", "status", "v")).GetProperty("size").GetInt64());

        var shrink = await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "resize", "v", "--size", "128M"));
        Assert.Equal("actorcache: volume v is 192M; shrinking is refused (it would cut off data)", shrink);
        Assert.Equal(192L << 20, await ExportSizeAsync(node, "v"));

        // The new size is recorded: a restart serves 192M with everything written.
        Assert.Equal(0, (await node.StopAsync()).ExitCode);
        await using var restarted = await NodeProcess.StartAsync(_dataDir);
        Assert.Equal(192L << 20, await ExportSizeAsync(restarted, "v"));
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0x41 63M 1M", "-c", "read -P 0x43 64M 1M", "-c", "read -P 0x44 191M 1M",
            restarted.TcpUri("v"));
    }

    [Fact]
    public async Task Delete_withdraws_the_export_removes_the_log_and_a_backing_the_node_made_and_a_restart_does_not_bring_it_back()
    {
        var userBacking = Path.Combine(_dataDir, "user.img");
        await File.WriteAllBytesAsync(userBacking, []);
        await using (var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M"))
        {
            await Cli.CheckAsync(node, "volume", "create", "made", "--size", "64M");
            await Cli.CheckAsync(node, "volume", "create", "given", "--size", "64M", "--backing", userBacking);
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x51 0 1M", "-c", "flush", node.TcpUri("made"));
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x52 0 1M", "-c", "flush", node.TcpUri("given"));
            Assert.True(Directory.Exists(Path.Combine(_dataDir, "log", "made")));

            Assert.Equal($"deleted volume made; removed its backing {Path.Combine(_dataDir, "volumes", "made.img")}\n",
                await Cli.CheckAsync(node, "volume", "delete", "made"));
            var given = await Cli.JsonAsync(node, "volume", "delete", "given");
            Assert.Equal("given", given.GetProperty("name").GetString());
            Assert.False(given.GetProperty("backingRemoved").GetBoolean());
            Assert.Equal(userBacking, given.GetProperty("backing").GetString());

            Assert.Equal(["vol0"], await ExportNamesAsync(node));
            Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "made.img")));
            Assert.False(Directory.Exists(Path.Combine(_dataDir, "log", "made")));
            Assert.False(Directory.Exists(Path.Combine(_dataDir, "log", "given")));
            // A backing the user gave is the user's: kept, with every write in it (the log was drained to it before it went).
            var kept = await File.ReadAllBytesAsync(userBacking);
            Assert.Equal(64L << 20, kept.Length);
            Assert.All(kept.AsSpan(0, 1 << 20).ToArray(), b => Assert.Equal(0x52, b));
            Assert.Equal(["vol0"], (await Cli.JsonAsync(node, "volume", "list")).GetProperty("volumes").EnumerateArray()
                .Select(v => v.GetProperty("name").GetString()).ToList());
            Assert.DoesNotContain("volume=\"made\"", string.Join('\n', (await node.MetricsAsync()).Keys));
            await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "status", "made"));
        }

        await using (var node = await NodeProcess.StartAsync(_dataDir))
        {
            Assert.Equal(["vol0"], await ExportNamesAsync(node));
            // The name is free again, and the new volume starts empty (no old log replayed into it).
            await Cli.CheckAsync(node, "volume", "create", "made", "--size", "64M");
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "read -P 0 0 1M", node.TcpUri("made"));
        }
    }

    [Fact]
    public async Task Delete_is_refused_while_a_client_is_connected_and_force_closes_its_connection()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M", "--volume", "busy:64M");
        // A client that keeps reading until the node closes its connection.
        var client = Tool.RunAsync("nbdsh", ["-u", node.UnixUri("busy"), "-c",
            "import time, sys\ntry:\n    while True:\n        h.pread(4096, 0)\n        time.sleep(0.05)\nexcept nbd.Error as e:\n    print('closed:', e)\n    sys.exit(3)"],
            TimeSpan.FromMinutes(2));
        await WaitForClientsAsync(node, "busy", 1);

        var refused = await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "delete", "busy"));
        Assert.Equal("actorcache: volume busy has 1 NBD client(s) connected (to it or to its past); disconnect them first, or force it (--force closes their connections)", refused);
        Assert.Equal(["busy", "vol0"], await ExportNamesAsync(node));
        Assert.False(client.IsCompleted, "the client is still connected");

        var forced = await Cli.JsonAsync(node, "volume", "delete", "busy", "--force");
        Assert.Equal(1, forced.GetProperty("clientsClosed").GetInt32());
        var ended = await client.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(3, ended.ExitCode);
        Assert.Contains("closed:", ended.Stdout);
        Assert.Equal(["vol0"], await ExportNamesAsync(node));
        Assert.Contains("left busy after", node.Output);
        Assert.Contains("closed by the node (volume deleted)", node.Output);
    }

    [Fact]
    public async Task Create_makes_the_checks_serve_makes_and_a_refused_volume_leaves_nothing()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M");
        var directory = Directory.CreateDirectory(Path.Combine(_dataDir, "a-directory")).FullName;
        Assert.Equal($"actorcache: volume d: backing {directory} is a directory; give a file or a block device",
            await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "d", "--size", "64M", "--backing", directory)));
        var missing = Path.Combine(_dataDir, "nowhere", "x.img");
        Assert.Equal($"actorcache: volume d: the directory of backing {missing} does not exist",
            await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "d", "--size", "64M", "--backing", missing)));
        var absent = Path.Combine(_dataDir, "absent.img");
        Assert.Contains("read-only backing", await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "d", "--size", "64M",
            "--backing", absent, "--read-only")));
        Assert.Equal($"actorcache: volume d: backing {Path.Combine(_dataDir, "volumes", "vol0.img")} already belongs to volume vol0",
            await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "d", "--size", "64M", "--backing",
                Path.Combine(_dataDir, "volumes", "vol0.img"))));
        Assert.Equal("actorcache: a volume named vol0 already exists (64M on " + Path.Combine(_dataDir, "volumes", "vol0.img") + ")",
            await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "vol0", "--size", "64M")));

        Assert.Equal(["vol0"], await ExportNamesAsync(node));
        Assert.False(File.Exists(absent));
        Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "d.img")));
        Assert.False(Directory.Exists(Path.Combine(_dataDir, "log", "d")));
        // A volume that cannot open (here its log directory cannot be made: a file is in the way) is taken back out.
        Directory.CreateDirectory(Path.Combine(_dataDir, "log"));
        await File.WriteAllTextAsync(Path.Combine(_dataDir, "log", "blocked"), "");
        var blocked = await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "blocked", "--size", "64M"));
        Assert.StartsWith("actorcache: the node failed: volume blocked could not be opened, so it was not created: ", blocked);
        Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "blocked.img")));
        Assert.Equal(["vol0"], await ExportNamesAsync(node));
        Assert.Equal(["vol0"], (await Cli.JsonAsync(node, "volume", "list")).GetProperty("volumes").EnumerateArray()
            .Select(v => v.GetProperty("name").GetString()).ToList());
        File.Delete(Path.Combine(_dataDir, "log", "blocked"));
        await Cli.CheckAsync(node, "volume", "create", "blocked", "--size", "64M"); // the name and the file were left free

        // A relative --backing is relative to where the command runs, not to where the node runs (the data directory, here).
        var elsewhere = Directory.CreateDirectory(Path.Combine(_dataDir, "elsewhere")).FullName;
        var result = await Tool.RunAsync("sh", ["-c", $"cd {elsewhere} && dotnet {NodeProcess.NodeDll} volume create rel --size 64M --backing rel.img --data-dir .."]);
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.True(File.Exists(Path.Combine(elsewhere, "rel.img")));
        Assert.False(File.Exists(Path.Combine(_dataDir, "rel.img")));
    }

    private static async Task WaitForClientsAsync(NodeProcess node, string volume, int clients)
    {
        for (var i = 0; i < 200; i++)
        {
            if ((await Cli.JsonAsync(node, "volume", "status", volume)).GetProperty("clients").GetInt32() == clients) return;
            await Task.Delay(100);
        }
        throw new TimeoutException($"volume {volume} never had {clients} client(s):\n{node.Output}");
    }
}
