using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// <c>actorcache actors</c> and <c>actorcache top</c> against a real node: the actor hierarchy as Akka holds it,
/// and live rates from two scrapes of <c>/metrics</c> while a real NBD client writes.
/// </summary>
public sealed class InspectCommandTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static IEnumerable<JsonElement> Descendants(JsonElement actor) =>
        new[] { actor }.Concat(actor.GetProperty("children").EnumerateArray().SelectMany(Descendants));

    [Fact]
    public async Task Actors_lists_each_volume_with_its_flusher_and_destager_and_their_mailboxes()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M:write-back", "--volume", "vol1:64M:write-back");

        var roots = await Cli.JsonAsync(node, "actors");
        var user = Assert.Single(roots.EnumerateArray());
        Assert.Equal("/user", user.GetProperty("path").GetString());
        var all = Descendants(user).ToList();
        foreach (var volume in new[] { "vol0", "vol1" })
        {
            var volumeActor = Assert.Single(all, a => a.GetProperty("path").GetString() == $"/user/volume-{volume}");
            Assert.Equal("ActorCache.Volumes.VolumeActor", volumeActor.GetProperty("type").GetString());
            var children = volumeActor.GetProperty("children").EnumerateArray().ToList();
            Assert.Equal(children.Count, volumeActor.GetProperty("childCount").GetInt32());
            foreach (var (role, type) in new[] { ("flusher", "ActorCache.Cache.FlusherActor"), ("destager", "ActorCache.Cache.DestagerActor") })
            {
                var actor = Assert.Single(children, c => c.GetProperty("path").GetString()!.StartsWith($"/user/volume-{volume}/{role}-{volume}-"));
                Assert.EndsWith(type[(type.LastIndexOf('.') + 1)..], actor.GetProperty("type").GetString());
                Assert.Equal(JsonValueKind.Number, actor.GetProperty("mailbox").ValueKind);
                Assert.True(actor.GetProperty("mailbox").GetInt32() >= 0);
            }
        }
        Assert.Contains(all, a => a.GetProperty("path").GetString() == "/user/cluster-node");
        // Every actor under /user is a started local actor, so each has a mailbox to count.
        Assert.All(all, a => Assert.Equal(JsonValueKind.Number, a.GetProperty("mailbox").ValueKind));

        // --depth 1: the top-level actors only, each still saying how many children it has; --system adds Akka's own.
        var shallow = await Cli.JsonAsync(node, "actors", "--depth", "1", "--system");
        Assert.Equal(["/user", "/system"], shallow.EnumerateArray().Select(r => r.GetProperty("path").GetString()));
        var vol0 = Assert.Single(shallow[0].GetProperty("children").EnumerateArray(), a => a.GetProperty("path").GetString() == "/user/volume-vol0");
        Assert.Equal(0, vol0.GetProperty("children").GetArrayLength());
        Assert.Equal(2, vol0.GetProperty("childCount").GetInt32());
        Assert.Contains(shallow[1].GetProperty("children").EnumerateArray(), a => a.GetProperty("path").GetString() == "/system/cluster");

        var tree = await Cli.CheckAsync(node, "actors");
        Assert.Contains("volume-vol0", tree);
        Assert.Contains("FlusherActor", tree);
        Assert.Contains("mailbox 0", tree);

        Assert.Contains("--depth", await Cli.RefusedAsync(2, Cli.RunAsync(node, "actors", "--depth", "0")));
    }

    [Fact]
    public async Task Top_once_shows_the_rates_of_a_real_client_and_its_totals_match_what_fio_did()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M:write-back", "--volume", "plain:16M:pass-through");

        // Reads and writes with a FLUSH every 16 writes, for long enough that a 2 s interval falls inside (the CLI itself takes
        // seconds to start on a busy machine).
        var fio = Tool.RunAsync("fio", ["--name=top", "--ioengine=nbd", $"--uri={node.UnixUri("vol0")}", "--rw=randrw", "--rwmixread=30",
            "--bs=4k", "--iodepth=8", "--size=32m", "--fsync=16", "--time_based", "--runtime=20", "--output-format=json"], TimeSpan.FromMinutes(2));
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await node.MetricsAsync()).GetValueOrDefault("actorcache_volume_writes_total{volume=\"vol0\"}") == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "fio made no write within 20 s");
            if (fio.IsCompleted) Assert.Fail("fio ended before it wrote: " + (await fio).Output);
            await Task.Delay(200);
        }

        var frame = await Cli.JsonAsync(node, "top", "--once", "--interval", "2");
        Assert.InRange(frame.GetProperty("intervalSeconds").GetDouble(), 1.9, 10);
        var vol0 = Volume(frame, "vol0");
        Assert.Equal("write-back", vol0.GetProperty("mode").GetString());
        Assert.True(vol0.GetProperty("writeIops").GetDouble() > 10, vol0.ToString());
        Assert.True(vol0.GetProperty("writeMiBps").GetDouble() > 0, vol0.ToString());
        Assert.True(vol0.GetProperty("readIops").GetDouble() > 0, vol0.ToString());
        Assert.True(vol0.GetProperty("flushesPerSecond").GetDouble() > 0, vol0.ToString());
        Assert.True(vol0.GetProperty("flushLatencyMs").GetDouble() > 0, vol0.ToString());
        // From the latency buckets: within the bounds they have (0 to 2.5 s), the 99th percentile no lower than the median.
        var p50 = vol0.GetProperty("flushLatencyP50Ms").GetDouble();
        var p99 = vol0.GetProperty("flushLatencyP99Ms").GetDouble();
        Assert.True(p50 > 0 && p50 <= p99 && p99 <= 2500, vol0.ToString());
        Assert.True(vol0.GetProperty("dirtyBytes").GetInt64() > 0, vol0.ToString());
        Assert.True(vol0.GetProperty("generation").GetInt64() > 1, vol0.ToString());
        Assert.Equal(JsonValueKind.Number, vol0.GetProperty("destageMiBps").ValueKind);
        Assert.True(DateTimeOffset.UtcNow - vol0.GetProperty("oldestRestorable").GetDateTimeOffset() < TimeSpan.FromMinutes(1), vol0.ToString());
        var plain = Volume(frame, "plain");
        Assert.Equal(0, plain.GetProperty("writeIops").GetDouble());
        Assert.Equal(JsonValueKind.Null, plain.GetProperty("dirtyBytes").ValueKind); // no cache, no log

        var table = await Cli.CheckAsync(node, "top", "--once", "--interval", "0.5");
        Assert.Contains("W IOPS", table);
        Assert.Contains("FLUSH p99 ms", table);
        Assert.Contains("vol0", table);
        Assert.Contains("write-back", table);

        // Once fio is done, the totals are exactly the requests it made.
        var done = await fio;
        Assert.True(done.ExitCode == 0, done.Output);
        var job = JsonDocument.Parse(done.Stdout[done.Stdout.IndexOf('{')..]).RootElement.GetProperty("jobs")[0];
        var after = Volume(await Cli.JsonAsync(node, "top", "--once", "--interval", "0.5"), "vol0");
        Assert.Equal(job.GetProperty("write").GetProperty("total_ios").GetInt64(), after.GetProperty("writes").GetInt64());
        Assert.Equal(job.GetProperty("read").GetProperty("total_ios").GetInt64(), after.GetProperty("reads").GetInt64());
        Assert.Equal(job.GetProperty("write").GetProperty("io_bytes").GetInt64(), after.GetProperty("writtenBytes").GetInt64());
        Assert.Equal(0, after.GetProperty("writeIops").GetDouble()); // nothing writes any more
        Assert.Equal(JsonValueKind.Null, after.GetProperty("flushLatencyP99Ms").ValueKind); // nor FLUSHes

        Assert.Contains("--once", await Cli.RefusedAsync(2, Cli.RunAsync(node, "top", "--json")));
    }

    [Fact]
    public async Task Top_redraws_every_interval_until_ctrl_c_and_then_exits_0()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M:write-back");
        // SIGINT is what Ctrl-C sends (to the process itself: a background job of a script would ignore it); stdout is a
        // pipe here, so each redraw is printed in full and can be counted.
        var start = new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["DOTNET_EnableDiagnostics"] = "0";
        foreach (var arg in new[] { NodeProcess.NodeDll, "top", "--interval", "0.5", "--data-dir", node.DataDir }) start.ArgumentList.Add(arg);
        using var top = System.Diagnostics.Process.Start(start)!;
        var stdout = top.StandardOutput.ReadToEndAsync();
        var stderr = top.StandardError.ReadToEndAsync();
        // Long enough for two frames at 0.5 s even when the machine is loaded (a start of the CLI takes seconds then).
        await Task.Delay(8000);
        Assert.False(top.HasExited, "top ended by itself: " + (top.HasExited ? await stderr : ""));
        await Tool.CheckAsync("kill", "-INT", top.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        // Generous: at a load of 20 (the suite's own, on two cores) a .NET process can take many seconds to get scheduled and exit.
        using (var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            try
            {
                await top.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                top.Kill();
                Assert.Fail("top did not end within 60 s of SIGINT: " + await stderr);
            }
        }
        var run = new ToolResult(top.ExitCode, await stdout, await stderr);
        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}:\n{run.Output}");
        Assert.True(run.Stdout.Split("W IOPS").Length - 1 >= 2, "fewer than two frames in 8 s:\n" + run.Stdout);
        Assert.Contains("vol0", run.Stdout);
        Assert.Equal("", run.Stderr);
    }

    private static JsonElement Volume(JsonElement frame, string name) =>
        Assert.Single(frame.GetProperty("volumes").EnumerateArray(), v => v.GetProperty("volume").GetString() == name);
}
