using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ActorCache.Integration.Tests;

/// <summary>
/// A rolling update of the StatefulSet, done as Kubernetes does it (RollingUpdate, one pod at a time, highest ordinal
/// first): run the pod's preStop command, send SIGTERM, wait up to terminationGracePeriodSeconds, start it again on
/// the same claim, and go on once its readiness probe passes. A writer with FLUSH keeps writing to the volume's
/// primary throughout, reconnecting to whichever pod serves it when the primary moves.
/// </summary>
public sealed partial class KubernetesTests
{
    private const int VolumeMiB = 64;
    private const int WriterBlocks = VolumeMiB * 256; // write j goes to block j % WriterBlocks and holds j: every block says which write it has

    [Fact]
    public async Task A_rolling_update_hands_the_primary_over_and_loses_no_flushed_write()
    {
        var manifests = KubernetesManifests.Parse(await KubernetesManifests.RenderAsync());
        var pod = KubernetesManifests.Single(manifests, "StatefulSet")["spec"]!["template"]!["spec"]!;
        var container = pod["containers"]!.AsArray().Single()!;
        var grace = TimeSpan.FromSeconds(int.Parse(pod["terminationGracePeriodSeconds"].Text(), CultureInfo.InvariantCulture));
        var preStop = container["lifecycle"]!["preStop"]!["exec"]!["command"]!.AsArray().Select(a => a.Text()).ToList();
        var readiness = container["readinessProbe"]!;
        var readinessPath = readiness["httpGet"]!["path"].Text();
        var probeTimeout = TimeSpan.FromSeconds(int.Parse(readiness["timeoutSeconds"]?.Text() ?? "1", CultureInfo.InvariantCulture));
        // Kubernetes marks a pod unready after failureThreshold failed probes, periodSeconds apart.
        var unreadyAfter = TimeSpan.FromSeconds(int.Parse(readiness["periodSeconds"].Text(), CultureInfo.InvariantCulture) *
                                                int.Parse(readiness["failureThreshold"].Text(), CultureInfo.InvariantCulture));

        var pods = Enumerable.Range(0, 3).Select(i => StartPod(manifests, i, listed: true)).ToList();
        foreach (var p in pods) await p.WaitReadyAsync();
        foreach (var p in pods) await WaitForMembersAsync(p, m => m.Count == 3 && m.All(x => x.GetProperty("status").GetString() == "Up"));
        await Cli.CheckAsync(pods[0], "volume", "create", "r", "--size", $"{VolumeMiB}M", "--replicas", "actorcache-0,actorcache-1,actorcache-2", "--protocol", "C");
        await WaitInSyncAsync(pods, "r", "every replica in sync after the create");

        var work = NewDir();
        var uris = Path.Combine(work, "uris");
        var progress = Path.Combine(work, "progress");
        var stop = Path.Combine(work, "stop");
        void WriteUris() => File.WriteAllText(uris, string.Join('\n', pods.Select(p => p.TcpUri("r"))) + "\n");
        WriteUris();
        var writer = Tool.RunAsync("nbdsh", ["-c", RollingWriterScript(uris, progress, stop, WriterBlocks)], TimeSpan.FromMinutes(10));
        var watching = new CancellationTokenSource();
        var probes = new ReadinessLog();
        var prober = ProbeAsync(() =>
        {
            lock (pods) return [.. pods];
        }, readinessPath, probeTimeout, probes, watching.Token);
        try
        {
            await WaitUntilAsync(() => LastFlushed(progress) >= 200, TimeSpan.FromSeconds(60), "200 writes flushed before the update");
            for (var ordinal = pods.Count - 1; ordinal >= 0; ordinal--)
            {
                var name = $"actorcache-{ordinal}";
                var primaryBefore = await PrimaryOfAsync(pods, "r");
                var flushedBefore = LastFlushed(progress);
                probes.Stopping(name);
                // preStop, as the kubelet runs it in the container: the image's actorcache binary, paths under the claim's mountPath.
                var hook = await Cli.RunAsync([.. preStop.Skip(1).Select(a => MapToPod(ordinal, a))]);
                Assert.True(hook.ExitCode == 0, $"preStop of {name} failed:\n{hook.Output}");
                if (primaryBefore == name)
                {
                    Assert.Contains("primary handed over to", hook.Stdout);
                    // The new primary holds every write flushed before the hand-off, or a later one, in every block (the writer goes on meanwhile).
                    var now = await PrimaryOfAsync(pods, "r");
                    var copy = Path.Combine(work, "after-hand-off.img");
                    await Tool.CheckAsync("nbdcopy", pods[int.Parse(now[^1..], CultureInfo.InvariantCulture)].TcpUri("r"), copy);
                    AssertHoldsWrites(await File.ReadAllBytesAsync(copy), flushedBefore, exactly: false, $"{now} right after {name} handed it over");
                }
                var (exit, took) = await pods[ordinal].StopAsync(grace);
                Assert.True(exit == 0 && took < grace, $"{name} stopped with {exit} after {took.TotalSeconds:F1} s (grace {grace.TotalSeconds} s)");

                var started = StartPod(manifests, ordinal, listed: true);
                lock (pods) pods[ordinal] = started;
                await pods[ordinal].WaitReadyAsync();
                WriteUris();
                var ready = await WaitReadyProbeAsync(pods[ordinal], readinessPath, TimeSpan.FromSeconds(120));
                probes.Started(name);
                // Ready means in sync: the primary says so at that moment.
                var row = (await PeerRowsAsync(pods, "r")).Single(r => r.GetProperty("node").GetString() == name);
                Assert.True(row.GetProperty("connection").GetString() == "connected" && row.GetProperty("disk").GetString() == "UpToDate" &&
                            row.GetProperty("outOfSyncBytes").GetInt64() == 0, $"{name} was ready ({ready}) while its replica was not in sync: {row}");
                Assert.True(LastFlushed(progress) > flushedBefore, $"the writer made no progress while {name} was updated");
            }
        }
        finally
        {
            File.WriteAllText(stop, "");
            watching.Cancel();
        }
        var written = await writer;
        await prober;
        Assert.True(written.ExitCode == 0 && written.Stdout.Contains("written "), $"the writer failed:\n{written.Output}");
        var total = int.Parse(written.Stdout.Split('\n').Single(l => l.StartsWith("written ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);

        // Kubernetes never saw a pod that was not being updated turn unready, and every answer was 200, or 503 naming why.
        probes.AssertNeverUnready(unreadyAfter);
        // The hand-off was a clean switchover: the new primary resynced nobody in full.
        var primary = await PrimaryOfAsync(pods, "r");
        Assert.NotEqual("actorcache-0", primary);
        var newPrimary = pods[int.Parse(primary[^1..], CultureInfo.InvariantCulture)];
        Assert.DoesNotContain("every block is marked out of sync", newPrimary.Output);

        await WaitInSyncAsync(pods, "r", "every replica in sync after the update");
        var verified = (await Cli.JsonAsync(newPrimary, "peer", "verify", "r", "--follow")).EnumerateArray().ToList();
        Assert.All(verified, p => Assert.True(p.GetProperty("outOfSyncBytes").GetInt64() == 0, $"verify found a difference: {p}"));
        // After every pod was restarted, each pod's replica entity is on that pod again (sharding show, as from kubectl exec).
        var regions = (await Cli.JsonAsync(pods[0], "sharding", "show")).EnumerateArray().ToList();
        foreach (var name in new[] { "actorcache-0", "actorcache-1", "actorcache-2" })
        {
            var region = Assert.Single(regions, r => r.GetProperty("node").GetString() == name);
            Assert.Equal([$"{name}/r"], region.GetProperty("shards").EnumerateArray().SelectMany(s => s.GetProperty("entities").EnumerateArray())
                .Select(e => e.GetString()!).ToArray());
        }
        var image = Path.Combine(work, "r.img");
        await Tool.CheckAsync("nbdcopy", newPrimary.TcpUri("r"), image);
        AssertHoldsWrites(await File.ReadAllBytesAsync(image), total, exactly: true, $"{primary} after the update");
    }

    /// <summary>
    /// Write j puts 4 KiB of byte j % 251 + 1 at block j % blocks, FLUSH after every 8th; after each FLUSH the count goes to the
    /// progress file. A failed request (the primary moved) reconnects to whichever URI accepts the export (secondaries refuse
    /// it) and writes again from the last FLUSH, so the volume ends as the writes up to the count say. Stops after a FLUSH once
    /// the stop file exists and prints the count and how often it reconnected.
    /// </summary>
    private static string RollingWriterScript(string uris, string progress, string stop, int blocks) => $$"""
        import os, struct, time
        def connect():
            deadline = time.time() + 120
            while time.time() < deadline:
                for uri in open('{{uris}}').read().split():
                    c = nbd.NBD()
                    try:
                        c.connect_uri(uri)
                        return c
                    except nbd.Error:
                        del c
                time.sleep(0.2)
            raise Exception('no pod accepted the export within 120 s')
        c = connect()
        p = open('{{progress}}', 'a')
        j = flushed = reconnects = 0
        while True:
            try:
                for _ in range(8):
                    c.pwrite(struct.pack('<Q', j) * 512, (j % {{blocks}}) * 4096)
                    j += 1
                c.flush()
                flushed = j
                p.write(str(j) + '\n')
                p.flush()
                if os.path.exists('{{stop}}'):
                    break
            except nbd.Error as e:
                reconnects += 1
                del c
                j = flushed
                c = connect()
        print('written', j, 'reconnects', reconnects)
        """;

    /// <summary>
    /// Each block holds the write its 8-byte pattern names. <paramref name="exactly"/>: the last of the first <paramref name="flushed"/>
    /// writes to it (zeroes where none went). Otherwise that one or a later write to the same block (the writer still runs).
    /// </summary>
    private static void AssertHoldsWrites(byte[] image, int flushed, bool exactly, string where)
    {
        Assert.Equal(VolumeMiB << 20, image.Length);
        for (var k = 0; k < WriterBlocks; k++)
        {
            var block = image.AsSpan(k * 4096, 4096);
            var last = flushed > k ? flushed - 1 - (flushed - 1 - k) % WriterBlocks : -1L; // the last flushed write to block k
            var held = BitConverter.ToInt64(block);
            var whole = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(block).IndexOfAnyExcept(held) < 0;
            var ok = whole && (last < 0 && held == 0 || (held == last || !exactly && held > last && held % WriterBlocks == k));
            if (!ok) Assert.Fail($"{where}: block {k} holds write {held} (whole block: {whole}); the last of the {flushed} flushed writes to it is {last}");
        }
    }

    private static int LastFlushed(string progress) =>
        File.Exists(progress) ? File.ReadAllLines(progress).Where(l => l.Length > 0).Select(int.Parse).DefaultIfEmpty(0).Max() : 0;

    /// <summary>A pod's arg as the container sees it, with the pod's mountPaths mapped to its local directories.</summary>
    private string MapToPod(int ordinal, string arg)
    {
        var mounts = _podMounts[ordinal];
        var under = mounts.Keys.Where(path => arg == path || arg.StartsWith(path + "/", StringComparison.Ordinal)).MaxBy(path => path.Length);
        return under is null ? arg : mounts[under] + arg[under.Length..];
    }

    private static async Task<List<JsonElement>> PeerRowsAsync(List<NodeProcess> pods, string volume)
    {
        foreach (var pod in pods.Where(p => !p.HasExited))
        {
            var result = await Cli.RunAsync(pod, "peer", "status", volume, "--json");
            if (result.ExitCode == 0) return [.. JsonDocument.Parse(result.Stdout).RootElement.EnumerateArray()];
        }
        return [];
    }

    private static async Task<string> PrimaryOfAsync(List<NodeProcess> pods, string volume) =>
        (await PeerRowsAsync(pods, volume)).FirstOrDefault(r => r.GetProperty("role").GetString() == "primary").GetProperty("node").GetString() ?? "";

    private static async Task WaitInSyncAsync(List<NodeProcess> pods, string volume, string what) =>
        await WaitUntilAsync(async () =>
        {
            var rows = await PeerRowsAsync(pods, volume);
            return rows.Count == 3 && rows.All(r => r.GetProperty("role").GetString() == "primary" ||
                                                     (r.GetProperty("connection").GetString() == "connected" && r.GetProperty("disk").GetString() == "UpToDate" &&
                                                      r.GetProperty("outOfSyncBytes").GetInt64() == 0));
        }, TimeSpan.FromSeconds(120), what);

    private static Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what) => WaitUntilAsync(() => Task.FromResult(condition()), timeout, what);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (watch.Elapsed > timeout) throw new Xunit.Sdk.XunitException($"not within {timeout.TotalSeconds} s: {what}");
            await Task.Delay(250);
        }
    }

    /// <summary>Polls the pod's readiness probe until it answers 200; returns how long that took.</summary>
    private static async Task<TimeSpan> WaitReadyProbeAsync(NodeProcess pod, string path, TimeSpan timeout)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var watch = Stopwatch.StartNew();
        var last = "";
        while (watch.Elapsed < timeout)
        {
            try
            {
                var answer = await http.GetAsync(pod.AdminUrl + path);
                if (answer.IsSuccessStatusCode) return watch.Elapsed;
                last = $"{(int)answer.StatusCode}: {await answer.Content.ReadAsStringAsync()}";
            }
            catch (HttpRequestException e)
            {
                last = e.Message;
            }
            await Task.Delay(250);
        }
        throw new Xunit.Sdk.XunitException($"the readiness probe of {pod.DataDir} did not pass within {timeout.TotalSeconds} s; last answer {last}\n{pod.Output}");
    }

    /// <summary>Every half second, every running pod's readiness probe, as the kubelet would ask it.</summary>
    private static async Task ProbeAsync(Func<List<NodeProcess>> pods, string path, TimeSpan timeout, ReadinessLog log, CancellationToken ct)
    {
        using var http = new HttpClient { Timeout = timeout };
        while (!ct.IsCancellationRequested)
        {
            var round = pods().Select((pod, i) => (pod, name: $"actorcache-{i}")).ToList();
            foreach (var (pod, name) in round)
            {
                if (pod.HasExited || pod.AdminUrl.Length == 0) continue;
                string answer;
                try
                {
                    var response = await http.GetAsync(pod.AdminUrl + path, ct);
                    answer = $"{(int)response.StatusCode} {(await response.Content.ReadAsStringAsync(ct)).Trim()}";
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (TaskCanceledException e)
                {
                    answer = $"timed out: {e.Message}"; // a failed probe for the kubelet too, and counted so below
                }
                catch (HttpRequestException e)
                {
                    answer = $"no answer: {e.Message}";
                }
                log.Add(name, answer);
            }
            try
            {
                await Task.Delay(500, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>What the readiness probes answered, and when each pod was being updated (its answers then are its own business).</summary>
    private sealed class ReadinessLog
    {
        private readonly Lock _gate = new();
        private readonly List<(TimeSpan At, string Pod, string Answer)> _answers = [];
        private readonly Dictionary<string, bool> _updating = [];
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public void Stopping(string pod)
        {
            lock (_gate) _updating[pod] = true;
        }

        public void Started(string pod)
        {
            lock (_gate) _updating[pod] = false;
        }

        public void Add(string pod, string answer)
        {
            lock (_gate)
                if (!_updating.GetValueOrDefault(pod)) _answers.Add((_clock.Elapsed, pod, answer));
        }

        /// <summary>
        /// Every answer is 200, a 503 that names a reason, or a probe that timed out (one slow answer on a loaded machine, which the
        /// kubelet counts as a failure like a 503); no pod outside its update failed long enough for Kubernetes to mark it unready.
        /// </summary>
        public void AssertNeverUnready(TimeSpan unreadyAfter)
        {
            lock (_gate)
            {
                Assert.NotEmpty(_answers);
                foreach (var (at, pod, answer) in _answers)
                    Assert.True(answer.StartsWith("200 ok", StringComparison.Ordinal) || (answer.StartsWith("503 ", StringComparison.Ordinal) && answer.Length > 8) ||
                                answer.StartsWith("timed out: ", StringComparison.Ordinal),
                        $"{pod} answered its readiness probe at {at.TotalSeconds:F1} s with: {answer}");
                foreach (var byPod in _answers.GroupBy(a => a.Pod))
                {
                    TimeSpan? failingSince = null;
                    foreach (var (at, _, answer) in byPod)
                    {
                        if (answer.StartsWith("200", StringComparison.Ordinal)) failingSince = null;
                        else if (failingSince is null) failingSince = at;
                        else Assert.True(at - failingSince.Value < unreadyAfter,
                            $"{byPod.Key} failed its readiness probe from {failingSince.Value.TotalSeconds:F1} s to {at.TotalSeconds:F1} s while another pod was updated: {answer}");
                    }
                }
            }
        }
    }
}
