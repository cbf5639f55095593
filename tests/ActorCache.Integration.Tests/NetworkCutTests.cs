using System.Diagnostics;
using System.Text.Json;
using Xunit.Abstractions;

namespace ActorCache.Integration.Tests;

/// <summary>
/// Network cuts without killing processes: three real nodes a, b, c, each in its own network namespace
/// (<c>ip netns</c>) with a veth pair whose outer end is on a bridge in the root namespace. A cut is the outer end
/// of a node's veth set down (its processes keep running, its TCP connections just go silent); a heal sets it up
/// again. Each node listens for NBD on a Unix socket in its data directory (reachable from the root namespace,
/// where nbdsh and nbdcopy run) and for admin on 127.0.0.1 inside its namespace, so the command line and curl
/// run there too (<c>ip netns exec NS ...</c>). The tests run as root; without usable network namespaces they fail.
/// </summary>
public sealed class NetworkCutTests : IAsyncLifetime
{
    private const int ClusterPort = 4053; // every node has its own namespace: the default port is free in each
    private static readonly string[] Names = ["a", "b", "c"];
    private readonly ITestOutputHelper _log;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly string _id = "ac" + Convert.ToHexString(Guid.NewGuid().ToByteArray())[..6].ToLowerInvariant();
    private readonly string _subnet = $"10.{Random.Shared.Next(100, 250)}.{Random.Shared.Next(0, 256)}";
    private readonly List<string> _namespaces = [];
    private readonly List<string> _links = [];
    private readonly List<string> _dirs = [];
    private readonly List<NodeProcess> _all = [];
    private readonly Dictionary<string, NodeProcess> _nodes = [];

    public NetworkCutTests(ITestOutputHelper log) => _log = log;

    private string Ns(string name) => $"{_id}-{name}";
    private string Outer(string name) => $"{_id}-{name}"; // the veth end on the bridge (links and namespaces are named apart)
    private string Inner(string name) => $"{_id}-{name}i";
    private string Bridge => $"{_id}br";
    private string Address(string name) => $"{_subnet}.{Array.IndexOf(Names, name) + 1}";

    private void Log(string what) => _log.WriteLine($"{_clock.Elapsed.TotalSeconds,7:F1}s {what}");

    private static Task<string> IpAsync(params string[] args) => Tool.CheckAsync(NodeProcess.IpCommand, args);

    public async Task InitializeAsync()
    {
        var probe = await Tool.RunAsync(NodeProcess.IpCommand, ["netns", "add", Ns("a")]);
        if (probe.ExitCode != 0)
            throw new Xunit.Sdk.XunitException(
                $"network namespaces are not usable on this machine: `ip netns add {Ns("a")}` exited {probe.ExitCode}: {probe.Output.Trim()}. " +
                "NetworkCutTests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2 (.ci/run installs it)");
        _namespaces.Add(Ns("a"));
        await IpAsync("link", "add", Bridge, "type", "bridge");
        _links.Add(Bridge);
        await IpAsync("link", "set", Bridge, "up");
        foreach (var name in Names)
        {
            if (name != "a")
            {
                await IpAsync("netns", "add", Ns(name));
                _namespaces.Add(Ns(name));
            }
            await IpAsync("link", "add", Outer(name), "type", "veth", "peer", "name", Inner(name), "netns", Ns(name));
            _links.Add(Outer(name));
            await IpAsync("link", "set", Outer(name), "master", Bridge);
            await IpAsync("link", "set", Outer(name), "up");
            await IpAsync("-n", Ns(name), "addr", "add", $"{Address(name)}/24", "dev", Inner(name));
            await IpAsync("-n", Ns(name), "link", "set", Inner(name), "up");
            await IpAsync("-n", Ns(name), "link", "set", "lo", "up");
        }
        Log($"namespaces {string.Join(", ", _namespaces)} on bridge {Bridge}, {_subnet}.0/24");
    }

    public async Task DisposeAsync()
    {
        // The test is over: no need for a graceful stop (a cut-off node would take its full timeout).
        foreach (var node in _all)
        {
            try { await node.KillAsync(); }
            catch (Exception e) { _log.WriteLine($"kill {node.Pid}: {e.Message}"); }
        }
        foreach (var ns in _namespaces) // deleting a namespace deletes its veth ends and so both ends of each pair
            await Tool.RunAsync(NodeProcess.IpCommand, ["netns", "del", ns]);
        foreach (var link in _links)
            if ((await Tool.RunAsync(NodeProcess.IpCommand, ["link", "show", link])).ExitCode == 0)
                await Tool.RunAsync(NodeProcess.IpCommand, ["link", "del", link]);
        foreach (var dir in _dirs)
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException e) { _log.WriteLine($"delete {dir}: {e.Message}"); }
        }
    }

    /// <summary>
    /// Starts node <paramref name="name"/> in its namespace, or restarts it on <paramref name="dataDir"/>: a restart lists the node
    /// itself last among its seeds, so it joins the running cluster rather than form one of its own (see ReplicaCluster.StartAsync).
    /// </summary>
    private async Task<NodeProcess> StartAsync(string name, string? dataDir = null, string[]? extraArgs = null)
    {
        var restart = dataDir is not null;
        var seeds = restart ? [.. Names.Where(n => n != name), name] : Names;
        if (dataDir is null)
        {
            dataDir = NodeProcess.NewDataDir();
            _dirs.Add(dataDir);
        }
        var node = NodeProcess.Launch(dataDir,
        [
            "--node-name", name, "--cluster", $"{Address(name)}:{ClusterPort}",
            .. seeds.SelectMany(n => new[] { "--seed", $"{Address(n)}:{ClusterPort}" }),
            "--volume", $"local-{name}:16M", "--set", "actorcache.cache.ring-size=64M", .. extraArgs ?? [],
            .. restart ? ReplicaCluster.RestartArgs : [],
        ], netns: Ns(name));
        _all.Add(node);
        _nodes[name] = node;
        await node.WaitReadyAsync();
        return node;
    }

    private async Task StartThreeAsync(params string[] extraArgs)
    {
        await Task.WhenAll(Names.Select(n => StartAsync(n, extraArgs: extraArgs)));
        await WaitAsync(async () => (await CliJsonAsync("a", "cluster", "show")).EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up") == 3,
            "three members Up", 90);
        Log("three members Up");
    }

    /// <summary>The command line against node <paramref name="name"/>, run inside its namespace (its admin listener is on its loopback).</summary>
    private Task<ToolResult> CliAsync(string name, params string[] args) =>
        Tool.RunAsync(NodeProcess.IpCommand, ["netns", "exec", Ns(name), "dotnet", NodeProcess.NodeDll, .. args, "--data-dir", _nodes[name].DataDir],
            TimeSpan.FromMinutes(3));

    private async Task<string> CliCheckAsync(string name, params string[] args)
    {
        var result = await CliAsync(name, args);
        if (result.ExitCode != 0) throw new Xunit.Sdk.XunitException($"actorcache {string.Join(' ', args)} on {name} exited {result.ExitCode}:\n{result.Output}");
        return result.Stdout;
    }

    private async Task<JsonElement> CliJsonAsync(string name, params string[] args) =>
        JsonDocument.Parse(await CliCheckAsync(name, [.. args, "--json"])).RootElement;

    private async Task<List<JsonElement>> PeersAsync(string name, string volume) =>
        [.. (await CliJsonAsync(name, "peer", "status", volume)).EnumerateArray()];

    /// <summary>GET /health of node <paramref name="name"/>, from inside its namespace: the status code and body.</summary>
    private async Task<(int Status, string Body)> HealthAsync(string name)
    {
        var result = await Tool.RunAsync(NodeProcess.IpCommand,
            ["netns", "exec", Ns(name), "curl", "-s", "-m", "10", "-w", "\n%{http_code}", _nodes[name].AdminUrl + "/health"]);
        var lines = result.Stdout.TrimEnd('\n').Split('\n');
        return (int.TryParse(lines[^1], out var status) ? status : 0, string.Join('\n', lines[..^1]));
    }

    private async Task CutAsync(string name)
    {
        await IpAsync("link", "set", Outer(name), "down");
        Log($"cut {name}");
    }

    private async Task HealAsync(string name)
    {
        await IpAsync("link", "set", Outer(name), "up");
        Log($"healed {name}");
    }

    private static async Task WaitAsync(Func<Task<bool>> done, string what, int seconds = 60)
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            if (await done()) return;
            await Task.Delay(300);
        }
        throw new Xunit.Sdk.XunitException($"{what}: not within {seconds} s");
    }

    private static bool InSync(JsonElement peer) =>
        peer.GetProperty("connection").GetString() is "local" or "connected" && peer.GetProperty("disk").GetString() == "UpToDate" &&
        peer.GetProperty("outOfSyncBytes").GetInt64() == 0 && !peer.GetProperty("splitBrain").GetBoolean();

    /// <summary>Runs the test body; a failure carries the tail of every node's log.</summary>
    private async Task WithLogsAsync(Func<Task> body)
    {
        try
        {
            await body();
        }
        catch (Exception e)
        {
            Log("FAILED: " + e.Message);
            var logs = string.Join("\n", _all.Select((n, i) =>
                $"--- node process {i} (pid {n.Pid}, {n.DataDir}) ---\n{string.Join('\n', n.Output.Split('\n').TakeLast(60))}"));
            throw new Xunit.Sdk.XunitException($"{e.GetType().Name}: {e.Message}\n{e.StackTrace}\n{logs}");
        }
    }

    /// <summary>
    /// Write j (0, 1, 2, ...) puts 4 KiB of byte j % 251 + 1 at block j % <paramref name="blocks"/>, FUA on every 5th, a FLUSH after
    /// every 8th, and after each FLUSH appends the count written to <paramref name="progress"/>. It stops after a FLUSH once
    /// <paramref name="stop"/> exists or <paramref name="max"/> writes are done, and prints the count: all of them flushed.
    /// A request the server fails ends it with <c>refused ERRNO</c> (then the count in the progress file is what was flushed).
    /// </summary>
    private static string WriterScript(string uri, string progress, string stop, int blocks, int max) => $$"""
        import os
        h.connect_uri('{{uri}}')
        p = open('{{progress}}', 'a')
        j = 0
        try:
            while j < {{max}} and not os.path.exists('{{stop}}'):
                for _ in range(8):
                    h.pwrite(bytes([j % 251 + 1]) * 4096, (j % {{blocks}}) * 4096, nbd.CMD_FLAG_FUA if j % 5 == 0 else 0)
                    j += 1
                h.flush()
                p.write(str(j) + '\n')
                p.flush()
            print('written', j)
        except nbd.Error as e:
            print('refused', e.errno, 'after', j, 'writes:', e)
        """;

    /// <summary>
    /// After <paramref name="flushed"/> flushed writes and at most 8 more (not flushed): each block of the writer's range holds the
    /// last flushed write to it or one of the later ones, and the rest of the volume zeroes. Every flushed write is there.
    /// </summary>
    private static void AssertHoldsFlushed(byte[] image, int flushed, int blocks, string where)
    {
        for (var k = 0; k < image.Length / 4096; k++)
        {
            var block = image.AsSpan(k * 4096, 4096);
            var allowed = new List<byte>();
            var last = k < blocks && flushed > k ? flushed - 1 - (flushed - 1 - k) % blocks : -1; // the last flushed write to block k
            allowed.Add(last >= 0 ? (byte)(last % 251 + 1) : (byte)0);
            for (var j = flushed; j < flushed + 8; j++)
                if (j % blocks == k) allowed.Add((byte)(j % 251 + 1));
            var holds = false;
            foreach (var b in allowed) holds |= block.IndexOfAnyExcept(b) < 0;
            if (!holds)
                Assert.Fail($"{where}: block {k} holds {block[0]} (first byte; whole block same: {block.IndexOfAnyExcept(block[0]) < 0}), " +
                            $"want one of {string.Join(", ", allowed)} (flushed writes: {flushed})");
        }
    }

    /// <summary>What the writer leaves after <paramref name="written"/> writes, all flushed, on a volume of <paramref name="size"/> bytes.</summary>
    private static byte[] Expected(int written, int blocks, int size)
    {
        var image = new byte[size];
        for (var j = Math.Max(0, written - blocks); j < written; j++)
            image.AsSpan(j % blocks * 4096, 4096).Fill((byte)(j % 251 + 1));
        return image;
    }

    private static int LastCount(string progress) =>
        File.Exists(progress) ? File.ReadAllLines(progress).Where(l => l.Length > 0).Select(int.Parse).DefaultIfEmpty(0).Max() : 0;

    private static int Written(ToolResult writer)
    {
        Assert.True(writer.ExitCode == 0 && !writer.Stdout.Contains("refused"), $"the writer failed ({writer.ExitCode}):\n{writer.Output}");
        var line = writer.Stdout.Split('\n').Single(l => l.StartsWith("written ", StringComparison.Ordinal));
        return int.Parse(line["written ".Length..]);
    }

    private static void AssertSameImage(byte[] want, byte[] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        var at = want.AsSpan().CommonPrefixLength(got);
        if (at < want.Length)
        {
            var differ = Enumerable.Range(0, want.Length / 4096)
                .Where(k => !want.AsSpan(k * 4096, 4096).SequenceEqual(got.AsSpan(k * 4096, 4096)))
                .Select(k => $"{k} (want {want[k * 4096]}, got {got[k * 4096]})").ToList();
            Assert.Fail($"{what}: {differ.Count} blocks differ: {string.Join(", ", differ.Take(20))}");
        }
    }

    private async Task<byte[]> CopyAsync(string name, string volume, string file)
    {
        var path = Path.Combine(_nodes[name].DataDir, file);
        await Tool.CheckAsync("nbdcopy", _nodes[name].UnixUri(volume), path);
        return await File.ReadAllBytesAsync(path);
    }

    /// <summary>
    /// A secondary cut off (c's link down, its process running) while the primary writes with FLUSH under protocol C:
    /// writes and FLUSH keep going (a and b are a majority); after the heal c is resynced (connected, UpToDate, nothing
    /// out of sync), online verify finds no difference with any peer, and after a switchover to c, c serves exactly
    /// what a served: every block compared through NBD.
    /// </summary>
    [Fact]
    public Task A_secondary_cut_off_and_healed_is_resynced_verified_and_serves_every_block_after_a_switchover() => WithLogsAsync(async () =>
    {
        const int VolumeMiB = 32, Blocks = 4096; // the writer wraps around the first 16 MiB
        // This test is about the replication link across a cut and a heal: the split-brain resolver must not down c
        // (which then stops itself) when a loaded machine makes the cut last longer than its default 20 s.
        await StartThreeAsync("--set", "akka.cluster.split-brain-resolver.stable-after=90s");
        await CliCheckAsync("a", "volume", "create", "r", "--size", $"{VolumeMiB}M", "--replicas", "a,b,c", "--protocol", "C");
        await WaitAsync(async () => (await PeersAsync("a", "r")).All(InSync), "both peers connected and UpToDate");
        Log("r created, peers in sync");

        var a = _nodes["a"];
        var progress = Path.Combine(a.DataDir, "progress.txt");
        var stop = Path.Combine(a.DataDir, "stop");
        var writer = Tool.RunAsync("nbdsh", ["-c", WriterScript(a.UnixUri("r"), progress, stop, Blocks, int.MaxValue)], TimeSpan.FromMinutes(4));
        try
        {
            await WaitAsync(() => Task.FromResult(LastCount(progress) >= 200), "200 writes flushed before the cut");
            await CutAsync("c");
            // The primary gives up on c after the ack timeout (5 s): c is no longer connected, writes go on.
            await WaitAsync(async () => (await PeersAsync("a", "r")).Single(p => p.GetProperty("node").GetString() == "c")
                .GetProperty("connection").GetString() != "connected", "a notices c is cut off", 30);
            var atDisconnect = LastCount(progress);
            Log($"a sees c disconnected; {atDisconnect} writes flushed");
            await WaitAsync(() => Task.FromResult(LastCount(progress) >= atDisconnect + 160), "writes and FLUSH go on while c is cut off", 30);
            var peers = await PeersAsync("a", "r");
            Assert.True(InSync(peers.Single(p => p.GetProperty("node").GetString() == "b")), "b should stay in sync while c is cut off");
            Assert.True(peers.Single(p => p.GetProperty("node").GetString() == "c").GetProperty("outOfSyncBytes").GetInt64() > 0,
                "a should track what c misses");
            Log($"{LastCount(progress)} writes flushed while c is cut off");
            await HealAsync("c");
            var atHeal = LastCount(progress);
            await WaitAsync(() => Task.FromResult(LastCount(progress) >= atHeal + 80), "writes go on after the heal", 30);
        }
        finally
        {
            await File.WriteAllTextAsync(stop, "");
        }
        var written = Written(await writer);
        Log($"writer done: {written} writes, all flushed");

        await WaitAsync(async () => (await PeersAsync("a", "r")).All(InSync), "c resynced after the heal", 60);
        Log("c connected, UpToDate, nothing out of sync");
        var verified = (await CliJsonAsync("a", "peer", "verify", "r", "--follow")).EnumerateArray().ToList();
        Assert.Equal(["b", "c"], verified.Where(p => p.GetProperty("role").GetString() == "secondary").Select(p => p.GetProperty("node").GetString()).Order());
        Assert.All(verified, p => Assert.True(p.GetProperty("outOfSyncBytes").GetInt64() == 0, $"verify found a difference: {p}"));
        Log("verify: no difference");

        var onA = await CopyAsync("a", "r", "on-a.img");
        AssertSameImage(Expected(written, Blocks, VolumeMiB << 20), onA, "a before the switchover");
        await CliCheckAsync("a", "volume", "demote", "r");
        await CliCheckAsync("c", "volume", "promote", "r", "--node", "c");
        Assert.Equal("c", (await CliJsonAsync("b", "volume", "status", "r")).GetProperty("replication").GetProperty("primary").GetString());
        AssertSameImage(onA, await CopyAsync("c", "r", "on-c.img"), "c after the switchover (against a before it)");
        Log("c serves every block a served");
    });


    /// <summary>
    /// Quorum on the minority side of a cut: the primary a cut off from b and c (its link down) no longer reaches a
    /// majority: a FLUSH on it fails with EIO and its /health says "no quorum". The majority promotes b once a is
    /// gone (the split-brain resolver downs a, which stops itself), b holds every block a flushed before the cut and
    /// takes new writes; a, healed and restarted from its data directory, comes back as a secondary, is resynced,
    /// verify finds no difference, and after a switchover back to a it serves exactly what b served. (When the cut
    /// heals, a's kernel delivers what a's replication connections still had queued, into b and c: they follow b
    /// by then and must drop those connections unapplied.)
    /// </summary>
    [Fact]
    public Task The_minority_side_of_a_cut_fails_writes_and_comes_back_as_a_resynced_secondary() => WithLogsAsync(async () =>
    {
        const int VolumeMiB = 16, Blocks = 2048; // the writer wraps around the first 8 MiB
        await StartThreeAsync();
        await CliCheckAsync("a", "volume", "create", "q", "--size", $"{VolumeMiB}M", "--replicas", "a,b,c");
        await WaitAsync(async () => (await PeersAsync("a", "q")).All(InSync), "both peers connected and UpToDate");
        var a = _nodes["a"];
        var progress = Path.Combine(a.DataDir, "progress.txt");
        var stop = Path.Combine(a.DataDir, "stop");
        var writer = Tool.RunAsync("nbdsh", ["-c", WriterScript(a.UnixUri("q"), progress, stop, Blocks, int.MaxValue)], TimeSpan.FromMinutes(2));
        var cut = new Stopwatch();
        try
        {
            await WaitAsync(() => Task.FromResult(LastCount(progress) >= 400), "400 writes flushed before the cut");
            // The writer keeps going through the cut until a's quorum fence fails a request.
            await CutAsync("a");
            cut.Start();
            await WaitAsync(async () => (await HealthAsync("a")).Body.Contains("no quorum"), "a notices it has no quorum", 20);
            Log($"a reports no quorum {cut.Elapsed.TotalSeconds:F1} s after the cut");
            await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(20)));
        }
        finally
        {
            await File.WriteAllTextAsync(stop, "");
        }
        var stopped = await writer;
        Assert.Contains("refused EIO", stopped.Output);
        var flushed = LastCount(progress);
        Log($"the writer on a: {stopped.Stdout.Trim()}; {flushed} writes flushed; {cut.Elapsed.TotalSeconds:F1} s after the cut");
        var refused = await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("q"), "-c",
            "try:\n    h.pwrite(b'x' * 4096, 0)\n    h.flush()\n    print('flushed')\nexcept nbd.Error as e:\n    print('refused', e.errno)"],
            TimeSpan.FromSeconds(30));
        Assert.Contains("refused EIO", refused.Output);
        var health = await HealthAsync("a");
        Assert.Equal(503, health.Status);
        Assert.Contains("q: no quorum: it reaches 1 of its 3 replicas (2 needed)", health.Body);
        Log($"a refuses FLUSH with EIO; {cut.Elapsed.TotalSeconds:F1} s after the cut");

        // The majority promotes b once a is gone (downed by the split-brain resolver; a, downed, stops itself), unless c holds a
        // newer batch of a than b (c acknowledged a FLUSH that b had not yet when the cut came): then b is refused, naming c, and c is.
        var primary = "b";
        var promote = await CliAsync("b", "volume", "promote", "q", "--node", "b");
        for (var tries = Stopwatch.StartNew(); promote.ExitCode != 0; promote = await CliAsync(primary, "volume", "promote", "q", "--node", primary))
        {
            if (tries.Elapsed > TimeSpan.FromSeconds(60)) throw new Xunit.Sdk.XunitException($"{primary} not promoted on the majority side within 60 s:\n{promote.Output}");
            if (promote.Stderr.Contains("node c holds newer data of q than node b", StringComparison.Ordinal)) primary = "c";
            else await Task.Delay(1000);
        }
        Log($"{primary} promoted {cut.Elapsed.TotalSeconds:F1} s after the cut");
        AssertHoldsFlushed(await CopyAsync(primary, "q", "on-new.img"), flushed, Blocks, $"{primary} after its promotion");
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", _nodes[primary].UnixUri("q"), "-c",
            "for i in range(64):\n    h.pwrite(b'B' * 4096, (2048 + i) * 4096)\nh.flush()\nprint('flushed')"])).Output);
        var onNew = await CopyAsync(primary, "q", "on-new2.img");
        Log($"{primary} wrote 64 blocks");

        var exit = await a.WaitExitAsync(TimeSpan.FromSeconds(60));
        Log($"a stopped by itself (exit {exit}) {cut.Elapsed.TotalSeconds:F1} s after the cut");
        await HealAsync("a");
        // Restarted once b and c have removed its old run, and a while after: a new run at once on the old address could reach b
        // while b's remoting still tore down its association with the old run (quarantined as it was removed). Seen in CI: b and
        // the new run never associated, and the split-brain resolver downed both as indirectly connected.
        foreach (var survivor in new[] { "b", "c" })
            await WaitAsync(async () => (await CliJsonAsync(survivor, "cluster", "show")).EnumerateArray().All(m => m.GetProperty("node").GetString() != "a"),
                $"a's old run removed by {survivor}", 60);
        await Task.Delay(TimeSpan.FromSeconds(10));
        await StartAsync("a", a.DataDir);
        // a comes back as a secondary of the new primary, unless a acknowledged a FLUSH while that node had not confirmed it (the
        // other one had): a cannot tell whether it arrived, so it reports split brain, and the operator gives a's side up.
        var discarded = false;
        await WaitAsync(async () =>
        {
            if ((await CliJsonAsync("a", "volume", "status", "q")).GetProperty("replication").GetProperty("role").GetString() == "secondary") return true;
            if (!discarded && (await HealthAsync("a")).Body.Contains($"q: split brain with {primary}", StringComparison.Ordinal))
            {
                Log($"a reports split brain with {primary} (a FLUSH it acknowledged was not confirmed by {primary}); discarding a's side");
                await CliCheckAsync("a", "volume", "discard-my-data", "q");
                discarded = true;
            }
            return false;
        }, "a back as a secondary", 60);
        await WaitAsync(async () => (await PeersAsync(primary, "q")).All(InSync), $"a resynced from {primary}", 60);
        Log("a back as a secondary and resynced");
        var verified = (await CliJsonAsync(primary, "peer", "verify", "q", "--follow")).EnumerateArray().ToList();
        Assert.All(verified, p => Assert.True(p.GetProperty("outOfSyncBytes").GetInt64() == 0, $"verify found a difference: {p}"));

        await CliCheckAsync(primary, "volume", "demote", "q");
        await CliCheckAsync("a", "volume", "promote", "q", "--node", "a");
        AssertSameImage(onNew, await CopyAsync("a", "q", "on-a.img"), $"a after the switchover (against {primary})");
        Log($"a serves every block {primary} served");
    });
}
