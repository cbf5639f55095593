using System.Text.Json;
using Xunit.Abstractions;
using static ActorCache.Integration.Tests.ReplicaCluster;

namespace ActorCache.Integration.Tests;

/// <summary>
/// Replicated volumes across three real <c>actorcache serve</c> processes (one Akka cluster, each node its
/// own data directory, NBD socket and replication listener), driven with the real command line and real
/// NBD clients: create on all three, a secondary refuses NBD and names its primary, protocol C keeps every
/// flushed write through a SIGKILL of the primary, promotion, the old primary coming back as a secondary
/// and resyncing, and the refusals (unknown nodes, promotion while the primary is up).
/// </summary>
public sealed class ReplicationTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int VolumeMiB = 64;
    private readonly ReplicaCluster _cluster = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        // The nodes' last words, shown with a failure (a wait that timed out says only what it waited for).
        log.WriteLine(_cluster.Tails(120));
        await _cluster.DisposeAsync();
    }

    private Task<NodeProcess> StartAsync(string name, string? dataDir = null) => _cluster.StartAsync(name, dataDir);

    private Task<(NodeProcess A, NodeProcess B, NodeProcess C)> StartThreeAsync() => _cluster.StartThreeAsync();

    [Fact]
    public async Task A_replicated_volume_lives_on_three_nodes_and_a_flushed_write_survives_the_primary_killed()
    {
        var (a, b, c) = await StartThreeAsync();

        // Refusals first: nothing half-created.
        var unknown = await Cli.RefusedAsync(1, Cli.RunAsync(a, "volume", "create", "r", "--size", $"{VolumeMiB}M", "--replicas", "a,b,zz"));
        Assert.Contains("zz is not an Up, reachable member", unknown);
        var twice = await Cli.RefusedAsync(2, Cli.RunAsync(a, "volume", "create", "r", "--size", $"{VolumeMiB}M", "--replicas", "a,a"));
        Assert.Contains("names a node twice", twice);
        foreach (var node in new[] { a, b, c })
            Assert.DoesNotContain("\"r\"", (await Cli.JsonAsync(node, "volume", "list")).ToString());

        // Created from b (any node may be asked); a is primary (first in the list).
        var created = await Cli.JsonAsync(b, "volume", "create", "r", "--size", $"{VolumeMiB}M", "--replicas", "a,b,c", "--protocol", "C");
        Assert.Equal("a", created.GetProperty("replication").GetProperty("primary").GetString());
        foreach (var node in new[] { a, b, c })
        {
            var info = await Cli.JsonAsync(node, "volume", "status", "r");
            Assert.Equal(node == a ? "primary" : "secondary", info.GetProperty("replication").GetProperty("role").GetString());
        }

        // A secondary's NBD export is refused, naming the primary.
        // (libnbd shows the server's message in its debug output.)
        var refused = await Tool.RunAsync("sh", ["-c", $"LIBNBD_DEBUG=1 nbdinfo '{b.UnixUri("r")}'"]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("its primary is node a", refused.Output);

        await WaitAsync(async () => (await PeersAsync(a, "r")).All(p => p.GetProperty("connection").GetString() is "local" or "connected"), "both peers connected");
        var peers = await PeersAsync(c, "r"); // asked of a secondary: it asks the primary
        Assert.Equal(["a", "b", "c"], peers.Select(p => p.GetProperty("node").GetString()));
        Assert.All(peers, p => Assert.Equal("UpToDate", p.GetProperty("disk").GetString()));
        Assert.Equal(JsonValueKind.Number, peers[1].GetProperty("outOfSyncBytes").ValueKind);
        Assert.False(peers[1].GetProperty("splitBrain").GetBoolean());

        // A revert asked of a secondary is refused before it does anything (it used to keep its undo snapshot, then fail with EIO).
        await Tool.CheckAsync("nbdsh", "-c", $"h.connect_uri('{a.UnixUri("r")}')\nh.pwrite(b'x' * 4096, 0)\nh.flush()\nh.shutdown()");
        await Cli.CheckAsync(b, "snapshot", "create", "r", "on-b");
        var revertOnB = await Cli.RefusedAsync(1, Cli.RunAsync(b, "volume", "revert", "r", "--to", "on-b"));
        Assert.Contains("cannot be reverted here", revertOnB);
        Assert.DoesNotContain("pre-revert", (await Cli.JsonAsync(b, "snapshot", "list", "r")).ToString());
        // Nor is a replicated volume grown: a primary grown alone would resync a peer that was away as UpToDate without its writes
        // past the old end.
        var grow = await Cli.RefusedAsync(1, Cli.RunAsync(a, "volume", "resize", "r", "--size", $"{2 * VolumeMiB}M"));
        Assert.Contains("replicated volume cannot grow", grow);

        // Created again (a retried provisioning script): refused, and no replica's state is touched (its marks of unshared writes,
        // bitmaps and history floor went with a failed create's cleanup).
        var stateFiles = new[] { a, b, c }.ToDictionary(n => n, n => Directory.GetFiles(Path.Combine(n.DataDir, "replicas", "r"), "*", SearchOption.AllDirectories));
        Assert.NotEmpty(stateFiles[a]);
        var again = await Cli.RefusedAsync(1, Cli.RunAsync(b, "volume", "create", "r", "--size", $"{VolumeMiB}M", "--replicas", "a,b,c"));
        Assert.Contains("already exists", again);
        foreach (var node in new[] { a, b, c })
            Assert.Equal(stateFiles[node], Directory.GetFiles(Path.Combine(node.DataDir, "replicas", "r"), "*", SearchOption.AllDirectories));

        // Each replica's sharded entity runs on its own node, and only there.
        await WaitAsync(async () => await EntitiesByNodeAsync(c) is var e && e.GetValueOrDefault("a") == "a/r" && e.GetValueOrDefault("b") == "b/r" && e.GetValueOrDefault("c") == "c/r", "replica entities on their nodes");

        // Write through a with FLUSH and FUA; SIGKILL a in the middle, once 200 writes are flushed.
        const int Blocks = 2000;
        var progress = Path.Combine(a.DataDir, "progress.txt");
        var writer = Tool.RunAsync("nbdsh", ["-c", WriterScript(a.UnixUri("r"), progress, Blocks)], TimeSpan.FromMinutes(3));
        await WaitAsync(() => Task.FromResult(LastCount(progress) >= 200), "200 writes flushed", 60);
        await a.KillAsync();
        await writer; // it fails: its server is gone
        var flushed = LastCount(progress);

        // b is promoted (a is gone) and serves every flushed block.
        await WaitAsync(async () => (await Cli.RunAsync(b, "volume", "promote", "r", "--node", "b")).ExitCode == 0, "promote b", 60);
        // b did not wait the failure detector's seconds for an answer from a: a's refused port told it a's process is gone.
        var bLog = b.Output;
        Assert.True(bLog.Contains("refuses connections: its process is gone", StringComparison.Ordinal) && bLog.Contains("node a at ", StringComparison.Ordinal),
            $"b never found a's process gone by its refused port:\n{bLog}");
        var onB = Path.Combine(b.DataDir, "on-b.img");
        await Tool.CheckAsync("nbdcopy", b.UnixUri("r"), onB);
        AssertHolds(File.ReadAllBytes(onB), flushed, Blocks, "b after the promotion");
        var infoB = await Cli.JsonAsync(c, "volume", "status", "r");
        Assert.Equal("b", infoB.GetProperty("replication").GetProperty("primary").GetString());

        // a comes back: it learns b is primary, refuses NBD, and is resynced from b.
        var a2 = await _cluster.RestartOnceSeenGoneAsync("a", a.DataDir, [b, c]);
        await WaitAsync(async () => (await Cli.JsonAsync(a2, "volume", "status", "r")).GetProperty("replication").GetProperty("role").GetString() == "secondary",
            "a back as a secondary");
        // a's entity is back on a (its new run), with b's region asked: the shard coordinator that lived on a moved.
        await WaitAsync(async () => (await EntitiesByNodeAsync(b)).GetValueOrDefault("a") == "a/r", "a's replica entity back on a");
        await WaitAsync(async () => (await PeersAsync(b, "r")).All(p => p.GetProperty("disk").GetString() == "UpToDate" &&
                                                                         p.GetProperty("connection").GetString() is "local" or "connected"), "a resynced", 90);
        var resynced = (await Cli.JsonAsync(b, "peer", "resync", "r", "--follow")).EnumerateArray().ToList();
        Assert.All(resynced, p => Assert.Equal("UpToDate", p.GetProperty("disk").GetString()));
        // Neither peer was resynced in full: both logs narrowed it to what differs since the last batch of a both held.
        Assert.Contains("the logs narrow the resync of c", b.Output);
        Assert.Contains("the logs narrow the resync of a", b.Output);
        var refusedA = await Tool.RunAsync("nbdinfo", [a2.UnixUri("r")]);
        Assert.NotEqual(0, refusedA.ExitCode);

        // Promotion of c while b is up as primary is refused.
        var whileUp = await Cli.RefusedAsync(1, Cli.RunAsync(c, "volume", "promote", "r", "--node", "c"));
        Assert.Contains("node b is the primary of r and is up; demote it first", whileUp);

        // A switchover: demote b, promote a, and a serves exactly what b had.
        await Cli.CheckAsync(b, "volume", "demote", "r");
        await Cli.CheckAsync(a2, "volume", "promote", "r");
        var onA = Path.Combine(a2.DataDir, "on-a.img");
        await Tool.CheckAsync("nbdcopy", a2.UnixUri("r"), onA);
        Assert.True(File.ReadAllBytes(onB).AsSpan().SequenceEqual(File.ReadAllBytes(onA)), "a after the switchover does not hold what b had");
    }

    /// <summary>Each member's replica entities as <c>sharding show --json</c> lists them, comma-separated, by node.</summary>
    private static async Task<Dictionary<string, string>> EntitiesByNodeAsync(NodeProcess asked) =>
        (await Cli.JsonAsync(asked, "sharding", "show")).EnumerateArray().GroupBy(r => r.GetProperty("node").GetString()!).ToDictionary(g => g.Key,
            g => string.Join(",", g.SelectMany(r => r.GetProperty("shards").EnumerateArray()).SelectMany(s => s.GetProperty("entities").EnumerateArray())
                .Select(e => e.GetString())));

    /// <summary>
    /// A primary restarted into a cluster of its own (its seeds did not let it in; here it lists only itself, so it joins itself at
    /// once) cannot tell whether its peer, running in the other cluster, was promoted meanwhile: it does not serve. Its NBD clients
    /// are refused and /health says why, a promotion without --force is refused, and with --force (its peers gone for good, say)
    /// it serves its data, every flushed write there.
    /// </summary>
    [Fact]
    public async Task A_primary_in_a_cluster_of_its_own_serves_only_by_force()
    {
        // Three nodes though the volume has two replicas: b and c keep the majority once a is killed.
        var (a, b, c) = await StartThreeAsync();
        await Cli.CheckAsync(a, "volume", "create", "o", "--size", "64M", "--replicas", "a,b", "--protocol", "C");
        await WaitAsync(async () => (await PeersAsync(a, "o")).All(p => p.GetProperty("disk").GetString() == "UpToDate" &&
                                                                         p.GetProperty("connection").GetString() is "local" or "connected"), "b in sync");
        await Tool.CheckAsync("nbdsh", "-c", $"h.connect_uri('{a.UnixUri("o")}')\nh.pwrite(b'o' * 4096, 0)\nh.flush()\nh.shutdown()");
        await a.KillAsync();

        // Back once b and c see the killed run unreachable (a run on the same address sooner can lose Akka.Remote's race with the
        // cleanup of the old one's association, and b and it would not talk for a while).
        var a2 = await _cluster.RestartOnceSeenGoneAsync("a", a.DataDir, [b, c], seeds: ["a"]);
        await WaitAsync(async () => (await HealthAsync(a2)).Contains("o: primary role not confirmed: node a formed a cluster of its own", StringComparison.Ordinal),
            "a says in /health why it does not serve o", 30);
        var members = (await Cli.JsonAsync(a2, "cluster", "show")).EnumerateArray().ToList();
        Assert.Equal(["a"], members.Select(m => m.GetProperty("node").GetString()));
        var refused = await Tool.RunAsync("sh", ["-c", $"LIBNBD_DEBUG=1 nbdinfo '{a2.UnixUri("o")}'"]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("primary role is not confirmed: node a formed a cluster of its own", refused.Output);
        var unforced = await Cli.RefusedAsync(1, Cli.RunAsync(a2, "volume", "promote", "o"));
        Assert.Contains("none of o's other replicas (b) is in it", unforced);
        // b, in the other cluster, still takes a for its primary: nothing there changed.
        Assert.Equal("secondary", (await Cli.JsonAsync(b, "volume", "status", "o")).GetProperty("replication").GetProperty("role").GetString());

        await Cli.CheckAsync(a2, "volume", "promote", "o", "--force");
        var read = await Tool.RunAsync("nbdsh", ["-c", $"h.connect_uri('{a2.UnixUri("o")}')\nh.pwrite(b'p' * 4096, 4096)\nh.flush()\n" +
                                                       "print(h.pread(4096, 0) == b'o' * 4096, h.pread(4096, 4096) == b'p' * 4096)"]);
        Assert.Contains("True True", read.Output);
        Assert.DoesNotContain("primary role not confirmed", await HealthAsync(a2));
    }

    /// <summary>
    /// A node that formed a cluster of its own gives way to its seeds' larger cluster. d, first in its own list of seeds, starts
    /// before b and c (nothing listens at their addresses yet), so after its (short) seed timeout it joins itself; then b and c
    /// form their cluster (they do not list d). d finds them in a larger cluster without it, leaves its own and exits 1, its
    /// volume flushed and closed, as on SIGTERM.
    /// </summary>
    [Fact]
    public async Task A_node_in_a_cluster_of_its_own_gives_way_to_its_seeds_larger_cluster()
    {
        var d = await _cluster.StartAsync("d", seeds: ["d", "b", "c"], more: ["--set", "akka.cluster.seed-node-timeout=1s"]);
        await d.WaitJoinedAsync();
        Assert.Equal(["d"], (await Cli.JsonAsync(d, "cluster", "show")).EnumerateArray().Select(m => m.GetProperty("node").GetString()));
        await Task.WhenAll(_cluster.StartAsync("b", seeds: ["b", "c"]), _cluster.StartAsync("c", seeds: ["b", "c"]));
        // Asked every 5 s: once b and c are one cluster of two, d gives way.
        Assert.True(await d.WaitExitAsync(TimeSpan.FromSeconds(90)) == 1, d.Output);
        Assert.Contains("actorcache: this node formed a cluster of its own (1 member) because its seeds did not let it in", d.Output);
        Assert.Contains("is in a cluster of 2 that does not have it", d.Output);
        Assert.Contains("volume local-d closed: flushed", d.Output);
    }

    /// <summary>
    /// The node that formed the cluster takes over a two-replica volume whose primary died, without --force: that peer was a
    /// member of its cluster, so its absence now says it is gone (an early version took "formed its cluster" alone for being
    /// apart from its peers, and refused the ordinary failover).
    /// </summary>
    [Fact]
    public async Task The_node_that_formed_the_cluster_is_promoted_without_force_when_its_peer_dies()
    {
        // a forms the cluster (its only seed is itself); the split-brain resolver stays out of the way of a cluster of two.
        string[] calm = ["--set", "akka.cluster.split-brain-resolver.stable-after=60s"];
        var a = await _cluster.StartAsync("a", seeds: ["a"], more: calm);
        var b = await _cluster.StartAsync("b", more: calm);
        await WaitAsync(async () => (await Cli.JsonAsync(a, "cluster", "show")).EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up") == 2,
            "two members Up");
        await Cli.CheckAsync(a, "volume", "create", "f", "--size", "64M", "--replicas", "b,a", "--protocol", "C");
        await WaitAsync(async () => await PeersAsync(b, "f") is { Count: 2 } peers && peers.All(p => p.GetProperty("disk").GetString() == "UpToDate" &&
                                                                                       p.GetProperty("connection").GetString() is "local" or "connected"), "a in sync");
        await Tool.CheckAsync("nbdsh", "-c", $"h.connect_uri('{b.UnixUri("f")}')\nh.pwrite(b'f' * 4096, 0)\nh.flush()\nh.shutdown()");
        await b.KillAsync();
        // Downed by hand and removed: b is no member of a's cluster any more, but it was one.
        await WaitAsync(async () => (await Cli.RunAsync(a, "cluster", "down", "b")).ExitCode == 0, "b downed", 30);
        await WaitAsync(async () => (await Cli.JsonAsync(a, "cluster", "show")).EnumerateArray().All(m => m.GetProperty("node").GetString() != "b"),
            "b removed", 30);

        await WaitAsync(async () => (await Cli.RunAsync(a, "volume", "promote", "f")).ExitCode == 0, "a promoted without --force", 30);
        var read = await Tool.RunAsync("nbdsh", ["-c", $"h.connect_uri('{a.UnixUri("f")}')\nprint(h.pread(4096, 0) == b'f' * 4096)"]);
        Assert.Contains("True", read.Output);
    }

    /// <summary>GET /health of <paramref name="node"/>: its body (the problems, one per line).</summary>
    private static async Task<string> HealthAsync(NodeProcess node) =>
        (await Tool.RunAsync("curl", ["-s", "-m", "10", node.AdminUrl + "/health"])).Stdout;

    /// <summary>
    /// A primary SIGKILLed and restarted with nobody promoted meanwhile stays primary; its links' bitmaps are unknown
    /// after the crash, and the logs narrow what its peers resync to the blocks written since the last batch each holds
    /// (not the whole volume); verify then finds nothing. A clean restart of the primary with a peer away then keeps where
    /// that peer stood in the log: it is caught up from there, not resynced.
    /// </summary>
    [Fact]
    public async Task A_primary_killed_and_restarted_resyncs_its_peers_only_where_the_logs_say_they_differ()
    {
        var (a, b, c) = await StartThreeAsync();
        await Cli.CheckAsync(a, "volume", "create", "k", "--size", "64M", "--replicas", "a,b,c", "--protocol", "C");
        await WaitAsync(async () => (await PeersAsync(a, "k")).All(p => p.GetProperty("disk").GetString() == "UpToDate" &&
                                                                         p.GetProperty("connection").GetString() is "local" or "connected"), "peers in sync", 60);
        static string Write(int from, int count, char c) =>
            $"for i in range({from}, {from + count}):\n    h.pwrite(b'{c}' * 4096, i * 4096)\nh.flush()\nprint('flushed')";
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("k"), "-c", Write(0, 200, 'k')])).Output);
        await Task.Delay(1500); // the secondaries record a history checkpoint at most once a second
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("k"), "-c", Write(200, 8, 'l')])).Output);
        await a.KillAsync();

        // Restarted as a supervisor does, once the others see the killed run gone: at once on its address, the new run lost the race
        // with Akka.Remote's cleanup of the old one's association now and then (b and it never reassociated, and the split-brain
        // resolver downed both).
        var a2 = await _cluster.RestartOnceSeenGoneAsync("a", a.DataDir, [b, c]);
        // Once its peers confirm nobody was promoted, it ships again: both resyncs narrowed, then in sync.
        await WaitAsync(() => Task.FromResult(a2.Output.Contains("the logs narrow the resync of b", StringComparison.Ordinal) &&
                                              a2.Output.Contains("the logs narrow the resync of c", StringComparison.Ordinal)), "both resyncs narrowed", 60);
        await WaitAsync(async () => (await PeersAsync(a2, "k")).All(p => p.GetProperty("disk").GetString() == "UpToDate" &&
                                                                          p.GetProperty("connection").GetString() is "local" or "connected"), "peers in sync again", 90);
        Assert.Equal("primary", (await Cli.JsonAsync(a2, "volume", "status", "k")).GetProperty("replication").GetProperty("role").GetString());
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a2.UnixUri("k"), "-c", Write(300, 8, 'm')])).Output);
        var verified = (await Cli.JsonAsync(a2, "peer", "verify", "k", "--follow")).EnumerateArray().ToList();
        Assert.All(verified, p => Assert.True(p.GetProperty("outOfSyncBytes").GetInt64() == 0, $"verify found a difference: {p}"));
        var image = Path.Combine(a2.DataDir, "k.img");
        await Tool.CheckAsync("nbdcopy", a2.UnixUri("k"), image);
        var bytes = File.ReadAllBytes(image);
        Assert.True(bytes.AsSpan(0, 200 * 4096).IndexOfAnyExcept((byte)'k') < 0 && bytes.AsSpan(200 * 4096, 8 * 4096).IndexOfAnyExcept((byte)'l') < 0,
            "a flushed block is missing after the restart");

        // Then a clean restart (SIGTERM) of the primary while c is away: a keeps where c stood in its log, so c, once back,
        // is caught up with the batches it missed (before and after the restart), not resynced.
        Assert.Equal(0, (await c.StopAsync()).ExitCode);
        // 64 KiB per write and FLUSH: one batch each, so the log to ship stays well inside catch-up-ratio (1.25x the blocks).
        static string Write64K(int from, char c) => $"h.pwrite(b'{c}' * 65536, {from} * 4096)\nh.flush()\nprint('flushed')";
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a2.UnixUri("k"), "-c", Write64K(400, 'n')])).Output);
        Assert.Equal(0, (await a2.StopAsync()).ExitCode);
        var a3 = await StartAsync("a", a.DataDir);
        await WaitAsync(async () => (await Tool.RunAsync("nbdsh", ["-u", a3.UnixUri("k"), "-c", Write64K(500, 'o')])).Output.Contains("flushed"),
            "a serves again after its clean restart", 60);
        await StartAsync("c", c.DataDir);
        await WaitAsync(async () => (await PeersAsync(a3, "k")).All(p => p.GetProperty("disk").GetString() == "UpToDate" &&
                                                                          p.GetProperty("outOfSyncBytes").GetInt64() == 0 &&
                                                                          p.GetProperty("connection").GetString() is "local" or "connected"), "c back in sync", 90);
        Assert.Matches(@"connected to c at \S+, catching up from this node's log", a3.Output);
        Assert.DoesNotContain("resync", a3.Output); // neither declined ("resyncing") nor given up midway ("resynced instead")
        verified = (await Cli.JsonAsync(a3, "peer", "verify", "k", "--follow")).EnumerateArray().ToList();
        Assert.All(verified, p => Assert.True(p.GetProperty("outOfSyncBytes").GetInt64() == 0, $"verify found a difference after the catch-up: {p}"));
    }

    /// <summary>
    /// Quorum: with both secondaries stopped (SIGSTOP: the processes hang as on a cut), the primary no longer
    /// reaches a majority, so a FLUSH fails with EIO (on-no-quorum = io-error) and /health says why; once
    /// they run again the same client's writes and FLUSH succeed.
    /// </summary>
    [Fact]
    public async Task A_primary_that_loses_its_majority_fails_writes_until_the_majority_is_back_and_verify_finds_a_damaged_block()
    {
        var (a, b, c) = await StartThreeAsync();
        await Cli.CheckAsync(a, "volume", "create", "q", "--size", "16M", "--replicas", "a,b,c");
        await WaitAsync(async () => (await PeersAsync(a, "q")).All(p => p.GetProperty("connection").GetString() is "local" or "connected"), "peers connected");
        const string Write = "h.pwrite(b'q' * 4096, 0)\nh.flush()\nprint('flushed')";
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("q"), "-c", Write])).Output);

        await Tool.CheckAsync("kill", "-STOP", b.Pid.ToString(), c.Pid.ToString());
        try
        {
            // The cluster's failure detector finds the stopped peers unreachable within seconds; then the primary has no quorum.
            using var http = new HttpClient();
            await WaitAsync(async () => (await (await http.GetAsync(a.AdminUrl + "/health")).Content.ReadAsStringAsync()).Contains("no quorum"),
                "the primary notices it has no quorum", 20);
            var refused = await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("q"), "-c",
                "try:\n    h.pwrite(b'x' * 4096, 0)\n    h.flush()\n    print('flushed')\nexcept nbd.Error as e:\n    print('refused', e.errno)"]);
            Assert.Contains("refused EIO", refused.Output);
            var health = await http.GetAsync(a.AdminUrl + "/health");
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, health.StatusCode);
            Assert.Contains("q: no quorum: it reaches 1 of its 3 replicas (2 needed)", await health.Content.ReadAsStringAsync());
        }
        finally
        {
            await Tool.CheckAsync("kill", "-CONT", b.Pid.ToString(), c.Pid.ToString());
        }
        await WaitAsync(async () => (await PeersAsync(a, "q")).All(p => p.GetProperty("connection").GetString() is "local" or "connected"), "peers back", 60);
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("q"), "-c", Write])).Output);

        // Online verify: a block damaged behind c's back (in its backing file, where c reads a block its cache does not hold)
        // is found, marked out of sync, resynced by peer resync, and a second verify finds nothing.
        await WaitAsync(async () => (await PeersAsync(a, "q")).All(p => p.GetProperty("disk").GetString() == "UpToDate"), "peers UpToDate", 60);
        await using (var backing = new FileStream(Path.Combine(c.DataDir, "volumes", "q.img"), FileMode.Open, FileAccess.Write))
        {
            backing.Position = 100 * 4096;
            backing.Write(Enumerable.Repeat((byte)0xEE, 4096).ToArray());
        }
        var verified = (await Cli.JsonAsync(a, "peer", "verify", "q", "--follow")).EnumerateArray().ToList();
        Assert.Equal(4096, verified.Single(p => p.GetProperty("node").GetString() == "c").GetProperty("outOfSyncBytes").GetInt64());
        Assert.Equal(0, verified.Single(p => p.GetProperty("node").GetString() == "b").GetProperty("outOfSyncBytes").GetInt64());
        var resynced = (await Cli.JsonAsync(a, "peer", "resync", "q", "--follow")).EnumerateArray().ToList();
        Assert.All(resynced, p => Assert.Equal(0, p.GetProperty("outOfSyncBytes").GetInt64()));
        var again = (await Cli.JsonAsync(a, "peer", "verify", "q", "--follow")).EnumerateArray().ToList();
        Assert.All(again, p => Assert.Equal(0, p.GetProperty("outOfSyncBytes").GetInt64()));
    }

    /// <summary>
    /// Split brain on a two-replica volume: a FLUSHes while b is stopped, then a is stopped and b is promoted
    /// and FLUSHes too; when both run again, a refuses b's newer replica set (it acknowledged writes b lacks),
    /// both report it, and nothing is merged. discard-my-data on a keeps a's data as a snapshot that reads back
    /// what a had, and a is resynced from b.
    /// </summary>
    [Fact]
    public async Task Split_brain_is_detected_reported_never_merged_and_the_discarded_side_is_kept_as_a_snapshot()
    {
        var (a, b, _) = await StartThreeAsync();
        await Cli.CheckAsync(a, "volume", "create", "s", "--size", "16M", "--replicas", "a,b");
        await WaitAsync(async () => (await PeersAsync(a, "s")).All(p => p.GetProperty("connection").GetString() is "local" or "connected"), "b connected");
        static string Write(char c) => $"h.pwrite(b'{c}' * 4096, 0)\nh.flush()\nprint('flushed')";
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("s"), "-c", Write('1')])).Output);

        // a writes while b is stopped (its FLUSH completes once the link gives up on b), then a is stopped.
        await Tool.CheckAsync("kill", "-STOP", b.Pid.ToString());
        Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", a.UnixUri("s"), "-c", Write('A')], TimeSpan.FromSeconds(30))).Output);
        await Tool.CheckAsync("kill", "-STOP", a.Pid.ToString());
        await Tool.CheckAsync("kill", "-CONT", b.Pid.ToString());
        try
        {
            // b, cut off from a, is promoted by force and writes too.
            await WaitAsync(async () => (await Cli.RunAsync(b, "volume", "promote", "s", "--force")).ExitCode == 0, "b promoted", 30);
            Assert.Contains("flushed", (await Tool.RunAsync("nbdsh", ["-u", b.UnixUri("s"), "-c", Write('B')], TimeSpan.FromSeconds(30))).Output);
        }
        finally
        {
            await Tool.CheckAsync("kill", "-CONT", a.Pid.ToString());
        }

        // Detected and reported on both sides; a keeps its data and role.
        await WaitAsync(async () => (await PeersAsync(a, "s")).Any(p => p.GetProperty("splitBrain").GetBoolean()), "a reports split brain", 30);
        await WaitAsync(async () => (await PeersAsync(b, "s")).Any(p => p.GetProperty("splitBrain").GetBoolean()), "b reports split brain", 30);
        using var http = new HttpClient();
        Assert.Contains("s: split brain with b", await (await http.GetAsync(a.AdminUrl + "/health")).Content.ReadAsStringAsync());
        Assert.Equal("a", (await Cli.JsonAsync(a, "volume", "status", "s")).GetProperty("replication").GetProperty("primary").GetString());
        var onA = Path.Combine(a.DataDir, "a-side.img");
        await Tool.CheckAsync("nbdcopy", a.UnixUri("s"), onA);
        Assert.Equal((byte)'A', File.ReadAllBytes(onA)[0]);

        // a gives up its side: kept as a snapshot, then resynced from b.
        var discarded = await Cli.RunAsync(a, "volume", "discard-my-data", "s");
        Assert.True(discarded.ExitCode == 0, $"discard-my-data on a exited {discarded.ExitCode}:\n{discarded.Output}\n{_cluster.Tails()}");
        var snapshot = (await Cli.JsonAsync(a, "snapshot", "list")).EnumerateArray()
            .Single(x => x.GetProperty("name").GetString()!.StartsWith("split-brain-", StringComparison.Ordinal)).GetProperty("name").GetString();
        var kept = Path.Combine(a.DataDir, "kept.img");
        await Tool.CheckAsync("nbdcopy", a.UnixUri($"s@{snapshot}"), kept);
        Assert.True(File.ReadAllBytes(onA).AsSpan().SequenceEqual(File.ReadAllBytes(kept)), "the split-brain snapshot does not read what a had");
        await WaitAsync(async () => (await PeersAsync(b, "s")).All(p => p.GetProperty("disk").GetString() == "UpToDate" &&
                                                                         p.GetProperty("connection").GetString() is "local" or "connected" &&
                                                                         !p.GetProperty("splitBrain").GetBoolean()), "a resynced from b", 60);
        // A switchover shows a now holds b's data.
        await Cli.CheckAsync(b, "volume", "demote", "s");
        await Cli.CheckAsync(a, "volume", "promote", "s");
        var after = Path.Combine(a.DataDir, "after.img");
        await Tool.CheckAsync("nbdcopy", a.UnixUri("s"), after);
        Assert.Equal((byte)'B', File.ReadAllBytes(after)[0]);
    }
}
