using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// Three real <c>actorcache serve</c> processes forming an Akka.NET cluster over real sockets (each with its
/// own data directory, Unix NBD socket and ports), driven with the real command line: <c>cluster show</c> as
/// a table and as JSON, a graceful leave and a rejoin under the same name, the down of a SIGKILLed member.
/// </summary>
public sealed class ClusterTests : IAsyncLifetime
{
    private readonly List<string> _dirs = [];
    private readonly List<NodeProcess> _nodes = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
        foreach (var dir in _dirs) Directory.Delete(dir, recursive: true);
    }

    private string NewDir()
    {
        var dir = NodeProcess.NewDataDir();
        _dirs.Add(dir);
        return dir;
    }

    /// <summary>
    /// A node of the test's cluster: volume v{name}, a small ring, the seed at <paramref name="seedPort"/>, and
    /// --node-name unless <paramref name="giveName"/> is false (a restart that relies on the recorded name).
    /// </summary>
    private async Task<NodeProcess> StartAsync(string dataDir, string name, int seedPort, int clusterPort, bool giveName, string[] more)
    {
        string[] args =
        [
            "--cluster", $"127.0.0.1:{clusterPort}", "--seed", $"127.0.0.1:{seedPort}", "--volume", $"v{name}:64M",
            "--set", "actorcache.cache.ring-size=64M", .. more, .. giveName ? new[] { "--node-name", name } : [],
        ];
        var node = NodeProcess.Launch(dataDir, args);
        _nodes.Add(node);
        await node.WaitReadyAsync();
        return node;
    }

    /// <summary>a (the seed, which lists itself as the user's example does), then b and c side by side.</summary>
    private async Task<(NodeProcess A, NodeProcess B, NodeProcess C, int SeedPort)> StartThreeAsync(params string[] more)
    {
        var seedPort = NodeProcess.FreePort();
        var a = await StartAsync(NewDir(), "a", seedPort, seedPort, true, more);
        var others = await Task.WhenAll(StartAsync(NewDir(), "b", seedPort, 0, true, more), StartAsync(NewDir(), "c", seedPort, 0, true, more));
        return (a, others[0], others[1], seedPort);
    }

    private static async Task<List<JsonElement>> ShowAsync(NodeProcess node) =>
        [.. (await Cli.JsonAsync(node, "cluster", "show")).EnumerateArray()];

    /// <summary>Polls <c>cluster show --json</c> on <paramref name="node"/> until <paramref name="done"/> holds.</summary>
    private static async Task<List<JsonElement>> WaitForAsync(NodeProcess node, Func<List<JsonElement>, bool> done, string what, int seconds = 60)
    {
        var watch = Stopwatch.StartNew();
        List<JsonElement> members = [];
        while (watch.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            members = await ShowAsync(node);
            if (done(members)) return members;
            await Task.Delay(500);
        }
        throw new Xunit.Sdk.XunitException($"{what}: not within {seconds} s; cluster show said {JsonSerializer.Serialize(members)}");
    }

    private static JsonElement Member(List<JsonElement> members, string name) => members.Single(m => m.GetProperty("node").GetString() == name);

    /// <summary>Whether <paramref name="name"/> is listed with its volume v{name}: each member is asked over remoting for 2 s, and one that
    /// answers late (a busy machine) is shown with none for that look.</summary>
    private static bool Serves(List<JsonElement> members, string name) =>
        members.Any(m => m.GetProperty("node").GetString() == name && m.GetProperty("volumes").EnumerateArray().Any(v => v.GetString() == $"v{name}"));

    private static string[] Names(List<JsonElement> members) => [.. members.Select(m => m.GetProperty("node").GetString()!).Order()];

    private static bool AllUp(List<JsonElement> members, params string[] names) =>
        Names(members).SequenceEqual(names) && members.All(m => m.GetProperty("status").GetString() == "Up" && m.GetProperty("reachable").GetBoolean());

    [Fact]
    public async Task Three_nodes_form_a_cluster_and_cluster_show_lists_every_member_with_its_volumes()
    {
        var (a, b, c, seedPort) = await StartThreeAsync();
        foreach (var node in new[] { a, b, c }) await WaitForAsync(node, m => AllUp(m, "a", "b", "c"), "three members Up");

        // Every node sees the same members, each with the volumes it serves (asked over remoting).
        var fromB = await WaitForAsync(b, m => AllUp(m, "a", "b", "c") && new[] { "a", "b", "c" }.All(n => Serves(m, n)), "every member with its volume");
        foreach (var (name, node) in new[] { ("a", a), ("b", b), ("c", c) })
        {
            var member = Member(fromB, name);
            Assert.Equal([$"v{name}"], member.GetProperty("volumes").EnumerateArray().Select(v => v.GetString()));
            Assert.True(member.GetProperty("reachable").GetBoolean());
            Assert.StartsWith("akka.tcp://actorcache@127.0.0.1:", member.GetProperty("address").GetString());
            Assert.Equal(["storage"], member.GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
            Assert.Equal(name == "b", member.GetProperty("self").GetBoolean());
        }
        Assert.Equal($"akka.tcp://actorcache@127.0.0.1:{seedPort}", Member(fromB, "a").GetProperty("address").GetString());
        Assert.Single(fromB, m => m.GetProperty("leader").GetBoolean());

        // The table says the same for people.
        var table = await Cli.CheckAsync(a, "cluster", "show");
        foreach (var header in new[] { "NODE", "ADDRESS", "STATUS", "REACHABLE", "ROLES", "VOLUMES" }) Assert.Contains(header, table);
        var rows = table.Split('\n').Where(l => l.Contains("akka.tcp://")).ToList();
        Assert.Equal(3, rows.Count);
        foreach (var name in new[] { "a", "b", "c" })
        {
            var row = Assert.Single(rows, r => r.Contains($" v{name} "));
            Assert.Contains(" Up ", row);
            Assert.Contains(" yes ", row);
            Assert.Contains(" storage ", row);
        }
        Assert.Contains("(this node)", Assert.Single(rows, r => r.Contains(" va ")));

        // A node in its cluster is healthy; its name is kept in the data directory.
        foreach (var node in new[] { a, b, c })
        {
            using var http = new HttpClient();
            Assert.Equal("ok\n", await http.GetStringAsync(node.AdminUrl + "/health"));
        }
        Assert.Equal("c\n", await File.ReadAllTextAsync(Path.Combine(c.DataDir, "node.name")));
    }

    [Fact]
    public async Task A_member_asked_to_leave_stops_cleanly_and_comes_back_under_its_name_after_a_restart()
    {
        var (a, b, c, seedPort) = await StartThreeAsync();
        await WaitForAsync(a, m => AllUp(m, "a", "b", "c"), "three members Up");

        // Leaving is a change: without the token it is refused.
        var refused = await Cli.RefusedAsync(1, Cli.RunAsync(a, "cluster", "leave", "c", "--token", "wrong"));
        Assert.Contains("the admin token is wrong", refused);
        Assert.Contains("no member of the cluster is named or at 'nosuch'", await Cli.RefusedAsync(1, Cli.RunAsync(a, "cluster", "leave", "nosuch")));

        // a asks c to leave; c flushes and stops as on SIGTERM, and exits 0.
        var left = await Cli.JsonAsync(a, "cluster", "leave", "c");
        Assert.Equal("c", left.GetProperty("node").GetString());
        Assert.Equal("Leaving", left.GetProperty("status").GetString());
        Assert.Equal(0, await c.WaitExitAsync(TimeSpan.FromSeconds(90)));
        Assert.Contains("stopping it as on SIGTERM", c.Output);
        Assert.Contains("volume vc closed: flushed", c.Output);
        Assert.Contains("stopped cleanly", c.Output);
        Assert.False(File.Exists(Path.Combine(c.DataDir, "admin.url")), "a clean stop removes admin.url");
        await WaitForAsync(a, m => AllUp(m, "a", "b"), "c gone from the members");

        // Restarted on the same data directory, without --node-name: it is c again, with its volume.
        var again = await StartAsync(c.DataDir, "c", seedPort, 0, giveName: false, []);
        var members = await WaitForAsync(a, m => AllUp(m, "a", "b", "c") && Serves(m, "c"), "c back with its volume");
        Assert.Equal(["vc"], Member(members, "c").GetProperty("volumes").EnumerateArray().Select(v => v.GetString()));
        Assert.Contains("c", Names(await ShowAsync(again)));

        // A node told to leave itself (no NODE) does the same.
        Assert.Contains("is leaving the cluster", await Cli.CheckAsync(b, "cluster", "leave"));
        Assert.Equal(0, await b.WaitExitAsync(TimeSpan.FromSeconds(90)));
        Assert.Contains("stopped cleanly", b.Output);
        await WaitForAsync(a, m => AllUp(m, "a", "c"), "b gone from the members");
    }

    [Fact]
    public async Task A_second_live_node_under_a_members_name_leaves_stops_and_exits_1()
    {
        var seedPort = NodeProcess.FreePort();
        var a = await StartAsync(NewDir(), "a", seedPort, seedPort, true, []);
        var b = await StartAsync(NewDir(), "b", seedPort, 0, true, []);
        await WaitForAsync(a, m => AllUp(m, "a", "b"), "two members Up");

        // Another data directory, the same name (a copied directory, a repeated --node-name): it joins, sees b answer, leaves.
        var impostor = NodeProcess.Launch(NewDir(), ["--cluster", "127.0.0.1:0", "--seed", $"127.0.0.1:{seedPort}", "--volume", "vx:64M",
            "--set", "actorcache.cache.ring-size=64M", "--node-name", "b"]);
        _nodes.Add(impostor);
        Assert.Equal(1, await impostor.WaitExitAsync(TimeSpan.FromSeconds(90)));
        // The whole output as the message: it exited 1 for another reason once (a local CI run), and xunit's Contains shows one line.
        var output = impostor.Output;
        Assert.True(output.Contains("actorcache: another live member of the cluster is named 'b' (at akka.tcp://actorcache@127.0.0.1:", StringComparison.Ordinal), output);
        Assert.True(output.Contains("stopping it as on SIGTERM", StringComparison.Ordinal), output); // its volume was flushed and closed on the way out
        Assert.True(output.Contains("volume vx closed: flushed", StringComparison.Ordinal), output);

        // The first b is untouched and the cluster is as it was.
        await WaitForAsync(a, m => AllUp(m, "a", "b"), "the impostor gone, a and b Up");
        Assert.Contains("b", Names(await ShowAsync(b)));
        Assert.False(b.Output.Contains("leaving the cluster", StringComparison.Ordinal), b.Output);
    }

    [Fact]
    public async Task A_killed_member_shows_unreachable_without_hanging_the_command_and_cluster_down_removes_it()
    {
        // The split-brain resolver would down it by itself after stable-after: keep it out of the way here.
        var (a, b, c, _) = await StartThreeAsync("--set", "akka.cluster.split-brain-resolver.stable-after=300s");
        await WaitForAsync(a, m => AllUp(m, "a", "b", "c"), "three members Up");

        await c.KillAsync();
        var members = await WaitForAsync(a, m => !Member(m, "c").GetProperty("reachable").GetBoolean(), "c unreachable", 30);
        var dead = Member(members, "c");
        Assert.Empty(dead.GetProperty("volumes").EnumerateArray());
        Assert.Equal("Up", dead.GetProperty("status").GetString());
        var watch = Stopwatch.StartNew();
        var table = await Cli.CheckAsync(a, "cluster", "show");
        // Bound loosely: the command starts a .NET process, seconds on a busy machine; each member is asked for 2 s at most.
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"cluster show took {watch.Elapsed} with a member gone");
        Assert.Contains(" no ", Assert.Single(table.Split('\n'), l => l.Contains("akka.tcp://") && l.Contains(" c ")));
        // Not a member a may down while it reaches it, nor one that does not exist; and never without the token.
        Assert.Contains("member b", await Cli.RefusedAsync(1, Cli.RunAsync(a, "cluster", "down", "b")));
        Assert.Contains("is reachable", await Cli.RefusedAsync(1, Cli.RunAsync(a, "cluster", "down", "b")));
        Assert.Contains("no member of the cluster", await Cli.RefusedAsync(1, Cli.RunAsync(a, "cluster", "down", "nosuch")));
        Assert.Contains("admin token", await Cli.RefusedAsync(1, Cli.RunAsync(a, "cluster", "down", "c", "--token", "wrong")));
        Assert.Contains("is unreachable, so it cannot leave gracefully; if it is gone for good, use 'actorcache cluster down c'",
            await Cli.RefusedAsync(1, Cli.RunAsync(a, "cluster", "leave", "c")));
        await Cli.RefusedAsync(2, Cli.RunAsync(a, "cluster", "down"));

        var downed = await Cli.JsonAsync(b, "cluster", "down", "c");
        Assert.Equal("Down", downed.GetProperty("status").GetString());
        await WaitForAsync(a, m => AllUp(m, "a", "b"), "c removed");
        await WaitForAsync(b, m => AllUp(m, "a", "b"), "c removed");
    }

    [Fact]
    public async Task The_keep_majority_split_brain_resolver_downs_a_killed_member_by_itself()
    {
        var (a, b, c, _) = await StartThreeAsync("--set", "akka.cluster.split-brain-resolver.stable-after=3s");
        await WaitForAsync(a, m => AllUp(m, "a", "b", "c"), "three members Up");
        await c.KillAsync();
        // a and b are the majority: they down c once the membership has been stable for 3 s.
        await WaitForAsync(a, m => AllUp(m, "a", "b"), "c downed and removed by the split-brain resolver", 60);
        Assert.Contains("SBR took decision", a.Output + b.Output);
    }
}

/// <summary>Cluster flags and situations that must be refused or reported clearly, leaving nothing half-created.</summary>
public sealed class ClusterStartFailureTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    /// <summary><c>serve</c> on a data directory that does not exist yet (so the test sees whether the start leaves it behind).</summary>
    private static Task<ToolResult> ServeAsync(string dataDir, params string[] args) =>
        Tool.RunAsync("dotnet", [NodeProcess.NodeDll, "serve", "--data-dir", dataDir, "--listen", $"unix:{Path.Combine(dataDir, "nbd.sock")}",
            "--admin", "127.0.0.1:0", .. args.Contains("--cluster") ? [] : new[] { "--cluster", "127.0.0.1:0" }, .. args], TimeSpan.FromSeconds(60));

    [Theory]
    [InlineData("--cluster", "banana", "--cluster: 'banana' needs a host and a port")]
    [InlineData("--cluster", "127.0.0.1:70000", "--cluster: '127.0.0.1:70000' needs a host and a port between 0 and 65535")]
    [InlineData("--cluster", "akka.tcp://actorcache@127.0.0.1:4053", "without a scheme")]
    [InlineData("--seed", "127.0.0.1", "--seed: '127.0.0.1' needs a host and a port between 1 and 65535")]
    [InlineData("--seed", "127.0.0.1:0", "needs a host and a port between 1 and 65535")]
    [InlineData("--seed", "akka.tcp://other@127.0.0.1:4053", "--seed: 'akka.tcp://other@127.0.0.1:4053' is not a node address")]
    [InlineData("--seed", "http://127.0.0.1:9460", "is not a node address")]
    [InlineData("--node-name", "a b", "--node-name: 'a b' is not a node name")]
    [InlineData("--node-name", "", "is not a node name")]
    [InlineData("--set", "actorcache.cluster.seed-nodes=[\"10.0.0.1\"]", "actorcache.cluster.seed-nodes: '10.0.0.1' needs a host and a port")]
    [InlineData("--set", "actorcache.cluster.join-timeout=soon", "actorcache.cluster.join-timeout = soon is not a duration")]
    public async Task Bad_cluster_flags_exit_2_with_one_line_and_create_nothing(string flag, string value, string message)
    {
        var fresh = Path.Combine(_dataDir, "fresh");
        var result = await ServeAsync(fresh, flag, value);
        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.Output.Split('\n'), l => l.Length > 0);
        Assert.StartsWith("actorcache: ", line);
        Assert.Contains(message, line);
        Assert.False(Directory.Exists(fresh), "nothing is created");
    }

    [Fact]
    public async Task A_cluster_port_in_use_is_one_line_exit_1_and_leaves_nothing()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var fresh = Path.Combine(_dataDir, "fresh");
        var result = await ServeAsync(fresh, "--cluster", $"127.0.0.1:{port}");
        Assert.Equal(1, result.ExitCode);
        var line = Assert.Single(result.Output.Split('\n'), l => l.Length > 0);
        Assert.Equal($"actorcache: cannot start: cannot listen on cluster address 127.0.0.1:{port}: address already in use (another node or program " +
                     "listens there); choose another with --cluster HOST:PORT (port 0 picks a free port)", line);
        Assert.False(Directory.Exists(fresh), "a start that failed removes the data directory it created");
    }

    [Fact]
    public async Task A_node_set_to_give_up_joining_stops_flushed_and_exits_1_for_its_supervisor()
    {
        var port = NodeProcess.FreePort(); // nothing listens there: no seed ever lets it in
        await using var node = NodeProcess.Launch(_dataDir, ["--seed", $"127.0.0.1:{port}", "--node-name", "stuck",
            "--set", "actorcache.cache.ring-size=64M", "--set", "akka.cluster.shutdown-after-unsuccessful-join-seed-nodes=20s",
            "--set", "actorcache.cluster.join-timeout=2s"]);
        // 20 s: the clock starts with the actor system, and a give-up before the node has started (a slow start) is a failed start.
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(90)));
        var output = node.Output;
        // The not-joined warning (after the 2 s join timeout) says what comes.
        Assert.True(output.Contains("still trying, and it stops (exit 1) if not let in within 20s of asking its seeds " +
                                    "(akka.cluster.shutdown-after-unsuccessful-join-seed-nodes)", StringComparison.Ordinal), output);
        Assert.True(output.Contains("actorcache: not let into the cluster within 20s (akka.cluster.shutdown-after-unsuccessful-join-seed-nodes), " +
                                    "so it stopped for its supervisor to start it again", StringComparison.Ordinal), output);
        // Stopped as on SIGTERM: the volume flushed and closed before the actor system went.
        Assert.True(output.Contains("this node is leaving the cluster (it could not join)", StringComparison.Ordinal), output);
        Assert.True(output.Contains("volume vol0 closed: flushed", StringComparison.Ordinal), output);
    }

    /// <summary>A seed where nothing listens, and one where something listens that is no ActorCache node (a wrong port: another cluster's, an admin listener).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_node_whose_seeds_do_not_let_it_in_serves_but_says_it_is_not_joined(bool somethingListens)
    {
        using var impostor = new TcpListener(IPAddress.Loopback, 0);
        impostor.Start();
        var port = ((IPEndPoint)impostor.LocalEndpoint).Port;
        if (!somethingListens) impostor.Stop();
        var accepted = new List<Socket>();
        var accepting = somethingListens ? Task.Run(async () =>
        {
            try
            {
                while (true) accepted.Add(await impostor.AcceptSocketAsync());
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }) : Task.CompletedTask;

        await using var node = await NodeProcess.StartAsync(_dataDir, "--seed", $"127.0.0.1:{port}", "--node-name", "lonely",
            "--set", "actorcache.cluster.join-timeout=3s");
        using var http = new HttpClient();
        var watch = Stopwatch.StartNew();
        // Not ready from the start: a node still joining takes no traffic that readiness decides.
        var health = await http.GetAsync(node.AdminUrl + "/health");
        var body = await health.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        // Joining within the 3 s join timeout; a slow start may already be past it.
        Assert.Matches(@"^cluster: (joining, not Up yet \(\d+ s of the 3 s join timeout\)|not joined after 3 s)", body);
        while (body.StartsWith("cluster: joining", StringComparison.Ordinal) && watch.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(250);
            health = await http.GetAsync(node.AdminUrl + "/health");
            body = await health.Content.ReadAsStringAsync();
        }
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.Equal($"cluster: not joined after 3 s: no seed node let this node in (seeds 127.0.0.1:{port}); check --seed, that a node of the cluster " +
                     "runs there and that its --cluster address is reachable from here (a node started again on its old address within seconds of " +
                     "a crash can stay out although its seeds answer: start it again); still trying\n", body);
        // The log says so too: the watch's timer logs it, /health may answer a moment before (both count from the start).
        for (var logged = Stopwatch.StartNew(); !node.Output.Contains("warn: ActorCache.Cluster.ClusterJoinWatch[0] cluster: not joined after 3 s", StringComparison.Ordinal)
                                                && logged.Elapsed < TimeSpan.FromSeconds(10);)
            await Task.Delay(100);
        Assert.Contains("warn: ActorCache.Cluster.ClusterJoinWatch[0] cluster: not joined after 3 s", node.Output);

        // The node still serves its volume, and says who it is.
        var self = Assert.Single((await Cli.JsonAsync(node, "cluster", "show")).EnumerateArray());
        Assert.Equal("lonely", self.GetProperty("node").GetString());
        Assert.Equal("NotJoined", self.GetProperty("status").GetString());
        Assert.Equal(["vol0"], self.GetProperty("volumes").EnumerateArray().Select(v => v.GetString()));
        Assert.Contains("has not joined a cluster yet", await Cli.CheckAsync(node, "cluster", "show"));
        var info = await Tool.RunAsync("nbdinfo", ["--size", node.UnixUri()]);
        Assert.Equal("1073741824", info.Stdout.Trim());

        // It stops cleanly all the same.
        Assert.Equal(0, (await node.StopAsync()).ExitCode);
        impostor.Stop();
        foreach (var socket in accepted) socket.Dispose();
        await accepting;
    }

    [Fact]
    public async Task A_data_directory_keeps_its_node_name_and_refuses_another()
    {
        await using (var first = await NodeProcess.StartAsync(_dataDir, "--node-name", "a"))
            Assert.Equal(0, (await first.StopAsync()).ExitCode);
        Assert.Equal("a\n", await File.ReadAllTextAsync(Path.Combine(_dataDir, "node.name")));
        var metadata = await File.ReadAllBytesAsync(Path.Combine(_dataDir, "metadata.db"));

        foreach (var args in new[] { new[] { "--node-name", "b" }, ["--set", "actorcache.cluster.node-name=b"] })
        {
            var node = NodeProcess.Launch(_dataDir, args);
            Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
            await node.DisposeAsync();
            var line = Assert.Single(node.Output.Split('\n'), l => l.Length > 0);
            Assert.StartsWith($"actorcache: cannot start: data directory {_dataDir} belongs to node 'a' ({_dataDir}/node.name), not 'b' as ", line);
            Assert.Contains("start it as 'a'", line);
            Assert.Equal("a\n", await File.ReadAllTextAsync(Path.Combine(_dataDir, "node.name")));
            Assert.False(File.Exists(Path.Combine(_dataDir, "node.pid")));
            Assert.False(File.Exists(Path.Combine(_dataDir, "admin.url")));
        }
        Assert.Equal(metadata, await File.ReadAllBytesAsync(Path.Combine(_dataDir, "metadata.db")));

        // Without a name it is a again (the host name is only the first start's default).
        await using var again = await NodeProcess.StartAsync(_dataDir);
        var self = Assert.Single((await Cli.JsonAsync(again, "cluster", "show")).EnumerateArray(), m => m.GetProperty("self").GetBoolean());
        Assert.Equal("a", self.GetProperty("node").GetString());
    }
}
