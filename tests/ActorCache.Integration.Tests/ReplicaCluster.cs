using System.Diagnostics;
using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// Three real <c>actorcache serve</c> processes named a, b and c (one Akka cluster, each node its own data
/// directory, NBD socket and replication listener) for the replication tests, and what those tests share:
/// waiting, peer status, the NBD writer with FLUSH and FUA, and the check of what a node serves after a crash.
/// Each node lists all three seeds with fixed ports, so a node restarted on its data directory rejoins.
/// </summary>
/// <param name="extraArgs">More <c>serve</c> arguments for every node (started or restarted).</param>
public sealed class ReplicaCluster(params string[] extraArgs) : IAsyncDisposable
{
    private readonly List<string> _dirs = [];
    private readonly List<(string Name, NodeProcess Node)> _nodes = [];
    private readonly Dictionary<string, int> _ports = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var (_, node) in _nodes) await node.DisposeAsync();
        foreach (var dir in _dirs) Directory.Delete(dir, recursive: true);
    }

    /// <summary>
    /// Starts node <paramref name="name"/> on a new data directory, or restarts it on <paramref name="dataDir"/>; it lists every
    /// node as a seed, or only those of <paramref name="seeds"/>; <paramref name="more"/> are further <c>serve</c> arguments for this start.
    /// A restart lists the node itself last, as the README advises for a node that rejoins a running cluster: the first seed in
    /// a node's list joins itself when no other seed answers within the seed timeout, and a run back on its old address can miss
    /// their answers for a while (Akka.Remote's cleanup of the old run), so it would form a cluster of its own and give way (exit 1)
    /// where a supervisor would start it again. Listed last, it asks the others until they let it in, again after each seed timeout
    /// without an answer: 3 s on a restart (12 s by default), so a first ask lost to that cleanup costs seconds, not a round's budget.
    /// </summary>
    public async Task<NodeProcess> StartAsync(string name, string? dataDir = null, string[]? seeds = null, string[]? more = null)
    {
        var restart = dataDir is not null;
        if (dataDir is null)
        {
            dataDir = NodeProcess.NewDataDir();
            lock (_dirs) _dirs.Add(dataDir);
        }
        NodeProcess node;
        lock (_nodes)
        {
            // Every node lists all three as seeds (as the README advises): a restarted node finds the others.
            foreach (var n in new[] { "a", "b", "c", name })
                if (!_ports.ContainsKey(n)) _ports[n] = NodeProcess.FreePort();
            node = NodeProcess.Launch(dataDir,
            [
                "--node-name", name, "--cluster", $"127.0.0.1:{_ports[name]}", .. (seeds ?? SeedsOf(name, restart)).SelectMany(n => new[] { "--seed", $"127.0.0.1:{_ports[n]}" }),
                "--volume", $"local-{name}:16M", "--set", "actorcache.cache.ring-size=64M", .. extraArgs,
                .. restart && seeds is null ? RestartArgs : [], .. more ?? [],
            ]);
            _nodes.Add((name, node));
        }
        await node.WaitReadyAsync();
        return node;
    }

    /// <summary>A restarted node asks its seeds again every 3 s while none answers (see <see cref="StartAsync"/>).</summary>
    public static readonly string[] RestartArgs = ["--set", "akka.cluster.seed-node-timeout=3s"];

    /// <summary>The three nodes as seeds; on a restart the node itself last (see <see cref="StartAsync"/>).</summary>
    private static string[] SeedsOf(string name, bool restart) =>
        restart ? [.. new[] { "a", "b", "c" }.Where(n => n != name), name] : ["a", "b", "c"];

    /// <summary>
    /// Restarts node <paramref name="name"/>, just SIGKILLed, on <paramref name="dataDir"/> once every one of <paramref name="survivors"/>
    /// sees its killed run unreachable, has marked it down and removed it, and 5 s after: a run back on the same address sooner can
    /// lose the race with Akka.Remote's cleanup of the old one's association (a known hazard of classic remoting: the new run and
    /// one member never reassociate, and the split-brain resolver downs them both).
    /// </summary>
    public async Task<NodeProcess> RestartOnceSeenGoneAsync(string name, string dataDir, IEnumerable<NodeProcess> survivors, string[]? seeds = null)
    {
        var others = survivors.ToList();
        foreach (var survivor in others)
            await WaitAsync(async () => (await Cli.JsonAsync(survivor, "cluster", "show")).EnumerateArray()
                    .All(m => m.GetProperty("node").GetString() != name || !m.GetProperty("reachable").GetBoolean()),
                $"node {name} seen unreachable", 60, 200);
        // Then marked down (as an operator does for a crashed node, README) and removed by every survivor, and a few seconds more:
        // a member that quarantines the old run (as it removes it) while the new run associates with it can lose that association
        // for good in classic Akka.Remote; the two never talk, and the split-brain resolver downs both as indirectly connected.
        // Seen in CI: the crash test's last restarted node and the primary.
        await WaitAsync(async () => !await ListsAsync(others[0], name) || (await Cli.RunAsync(others[0], "cluster", "down", name)).ExitCode == 0,
            $"node {name} downed", 60, 500);
        foreach (var survivor in others) await WaitAsync(async () => !await ListsAsync(survivor, name), $"node {name} removed by every survivor", 60, 200);
        await Task.Delay(TimeSpan.FromSeconds(5));
        return await StartAsync(name, dataDir, seeds);
    }

    /// <summary>Whether <paramref name="node"/> lists a member named <paramref name="name"/> (any run of it).</summary>
    private static async Task<bool> ListsAsync(NodeProcess node, string name) =>
        (await Cli.JsonAsync(node, "cluster", "show")).EnumerateArray().Any(m => m.GetProperty("node").GetString() == name);

    public async Task<(NodeProcess A, NodeProcess B, NodeProcess C)> StartThreeAsync()
    {
        var all = await Task.WhenAll(StartAsync("a"), StartAsync("b"), StartAsync("c"));
        var (a, others) = (all[0], all[1..]);
        await WaitAsync(async () => (await Cli.JsonAsync(a, "cluster", "show")).EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up") == 3,
            "three members Up");
        return (a, others[0], others[1]);
    }

    /// <summary>The last <paramref name="lines"/> lines of every process started (killed ones too), for a failure message.</summary>
    public string Tails(int lines = 60)
    {
        lock (_nodes)
            return string.Join("\n", _nodes.Select(n =>
            {
                var output = n.Node.Output.Split('\n');
                return $"----- node {n.Name} (pid {n.Node.Pid}{(n.Node.HasExited ? ", exited" : "")}), last {Math.Min(lines, output.Length)} lines -----\n" +
                       string.Join('\n', output.TakeLast(lines));
            }));
    }

    public static async Task WaitAsync(Func<Task<bool>> done, string what, int seconds = 60, int pollMilliseconds = 300)
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            if (await done()) return;
            await Task.Delay(pollMilliseconds);
        }
        throw new Xunit.Sdk.XunitException($"{what}: not within {seconds} s");
    }

    public static async Task<List<JsonElement>> PeersAsync(NodeProcess node, string volume) =>
        [.. (await Cli.JsonAsync(node, "peer", "status", volume)).EnumerateArray()];

    /// <summary>The byte that fills block <paramref name="block"/> when written in round <paramref name="round"/> (never 0; 251 is prime, so rounds fewer than 251 apart differ).</summary>
    public static byte Pattern(int block, int round) => (byte)((block + 37 * round) % 251 + 1);

    /// <summary>
    /// Makes <paramref name="writes"/> writes: write i fills block <paramref name="start"/> + i % <paramref name="region"/> with
    /// <see cref="Pattern"/>(block, <paramref name="round"/>), FUA on every 5th, a FLUSH after every 8th, and after each FLUSH
    /// returns appends the count written to <paramref name="progress"/>: every count in that file is flushed. By default block i at
    /// block i, once each. With <paramref name="stop"/> it ends (after a FLUSH) once that file exists.
    /// </summary>
    public static string WriterScript(string uri, string progress, int writes, int start = 0, int? region = null, int round = 0, string? stop = null) => $$"""
        import os
        h.connect_uri('{{uri}}')
        p = open('{{progress}}', 'a')
        for i in range({{writes}}):
            b = {{start}} + i % {{region ?? writes}}
            h.pwrite(bytes([(b + 37 * {{round}}) % 251 + 1]) * 4096, b * 4096, nbd.CMD_FLAG_FUA if i % 5 == 0 else 0)
            if i % 8 == 7:
                h.flush()
                p.write(str(i + 1) + '\n')
                p.flush()
                if {{(stop is null ? "False" : $"os.path.exists('{stop}')")}}:
                    break
        """;

    /// <summary>Every block before <paramref name="flushed"/> holds its pattern; every later one its pattern or zeroes (nothing torn, nothing foreign).</summary>
    public static void AssertHolds(byte[] image, int flushed, int written, string where)
    {
        for (var i = 0; i < written; i++)
        {
            var block = image.AsSpan(i * 4096, 4096);
            var want = Pattern(i, 0);
            var whole = block.IndexOfAnyExcept(want) < 0;
            if (i < flushed) Assert.True(whole, $"{where}: flushed block {i} does not hold its data");
            else Assert.True(whole || block.IndexOfAnyExcept((byte)0) < 0, $"{where}: block {i} is torn or foreign");
        }
    }

    public static int LastCount(string progress) =>
        File.Exists(progress) ? File.ReadAllLines(progress).Where(l => l.Length > 0).Select(int.Parse).DefaultIfEmpty(0).Max() : 0;
}
