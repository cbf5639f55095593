using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// <c>actorcache volume history|revert</c> and <c>actorcache snapshot ...</c> end to end: the real command
/// line against a real node, the snapshots read back with NBD clients nobody here wrote (nbdcopy,
/// nbdinfo, qemu-img), through kill -9 and restarts, and every refusal.
/// </summary>
public sealed class SnapshotCommandTests : IDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private string File(string name) => Path.Combine(_dataDir, name);

    private static async Task<byte[]> CopyOutAsync(NodeProcess node, string export, string path)
    {
        await Tool.CheckAsync("nbdcopy", node.UnixUri(export), path);
        return await System.IO.File.ReadAllBytesAsync(path);
    }

    private static async Task WriteAsync(NodeProcess node, string export, string path, byte[] data)
    {
        await System.IO.File.WriteAllBytesAsync(path, data);
        await Tool.CheckAsync("nbdcopy", "--flush", path, node.UnixUri(export)); // the FLUSH closes a generation
    }

    [Fact]
    public async Task Snapshots_and_clones_read_what_the_volume_held_through_kill_9_and_restart_and_json_has_the_documented_fields()
    {
        var image = new byte[32 << 20];
        var first = Tool.RandomBytes(16 << 20, 1);
        var cloneWrite = Tool.RandomBytes(1 << 20, 3);
        var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:32M");
        try
        {
            await WriteAsync(node, "vol0", File("first.img"), first);
            first.CopyTo(image, 0);
            var beforeImage = (byte[])image.Clone();
            var created = (await Cli.JsonAsync(node, "snapshot", "create", "vol0", "before"))[0];
            Assert.Equal("vol0@before", created.GetProperty("export").GetString());

            // The volume moves on: 4 MiB at 8 MiB.
            await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", $"write -P 7 {8 << 20} {4 << 20}", "-c", "flush", node.UnixUri("vol0"));
            Array.Fill(image, (byte)7, 8 << 20, 4 << 20);

            // history: oldest first, the documented fields.
            var history = await Cli.JsonAsync(node, "volume", "history", "vol0");
            Assert.True(history.GetArrayLength() >= 2, history.ToString());
            foreach (var point in history.EnumerateArray())
            {
                Assert.Equal(["generation", "time", "bytes"], point.EnumerateObject().Select(p => p.Name));
                Assert.EndsWith("Z", point.GetProperty("time").GetString());
            }
            var generations = history.EnumerateArray().Select(p => p.GetProperty("generation").GetInt64()).ToList();
            Assert.Equal(generations.Order(), generations);

            // list: the documented fields; the export is listed by nbdinfo and reads the old content (qemu-img agrees).
            var listed = Assert.Single((await Cli.JsonAsync(node, "snapshot", "list", "vol0")).EnumerateArray());
            foreach (var field in new[] { "volume", "name", "generation", "time", "export", "state", "exclusiveBytes" })
                Assert.True(listed.TryGetProperty(field, out _), field);
            Assert.Equal("ok", listed.GetProperty("state").GetString());
            Assert.Contains("vol0@before", await Tool.CheckAsync("nbdinfo", "--list", node.UnixUri("")));
            await System.IO.File.WriteAllBytesAsync(File("expected-before.img"), beforeImage);
            await Tool.CheckAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", File("expected-before.img"), node.UnixUri("vol0@before"));
            Assert.Equal(beforeImage, await CopyOutAsync(node, "vol0@before", File("out.img")));

            // diff: the 4 MiB written since, nothing else missing.
            var diff = await Cli.JsonAsync(node, "snapshot", "diff", "vol0@before", "vol0");
            var ranges = diff.EnumerateArray().Select(r => (Offset: r.GetProperty("offset").GetInt64(), Length: r.GetProperty("length").GetInt64())).ToList();
            Assert.Equal([(8L << 20, 4L << 20)], ranges);
            // The same as a qemu dirty bitmap on the live export, as qemu-based backup tools read it.
            var map = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--json", "--map=qemu:dirty-bitmap:before", node.UnixUri("vol0"))).RootElement;
            var dirty = map.EnumerateArray().Where(e => (e.GetProperty("type").GetInt64() & 1) != 0)
                .Select(e => (Offset: e.GetProperty("offset").GetInt64(), Length: e.GetProperty("length").GetInt64())).ToList();
            Assert.Equal(ranges, dirty);

            // A thin clone reads the snapshot; its writes change neither the snapshot nor the volume.
            await Cli.CheckAsync(node, "snapshot", "clone", "vol0@before", "c1");
            Assert.Equal(beforeImage, await CopyOutAsync(node, "c1", File("c1.img")));
            await WriteAsync(node, "c1", File("cw.img"), cloneWrite);
            var cloneImage = (byte[])beforeImage.Clone();
            cloneWrite.CopyTo(cloneImage, 0);
            Assert.Equal(cloneImage, await CopyOutAsync(node, "c1", File("c1.img")));
            Assert.Equal(beforeImage, await CopyOutAsync(node, "vol0@before", File("out.img")));
            Assert.Equal(image, await CopyOutAsync(node, "vol0", File("out.img")));
            Assert.Equal(["c1"], (await Cli.JsonAsync(node, "snapshot", "list", "vol0"))[0].GetProperty("clones").EnumerateArray().Select(c => c.GetString()));

            // An independent clone copies the rest and needs the snapshot no longer.
            await Cli.CheckAsync(node, "snapshot", "clone", "vol0@before", "c2", "--independent");
            Assert.Equal(beforeImage, await CopyOutAsync(node, "c2", File("c2.img")));

            // Deleting what something still needs is refused, and says what needs it.
            Assert.Contains("clone(s) c1", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "delete", "vol0@before")));
            Assert.Contains("snapshot vol0@before", await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "delete", "vol0")));

            await node.KillAsync();
            await node.DisposeAsync();
            node = await NodeProcess.StartAsync(_dataDir);

            Assert.Equal(beforeImage, await CopyOutAsync(node, "vol0@before", File("out.img")));
            Assert.Equal(image, await CopyOutAsync(node, "vol0", File("out.img")));
            Assert.Equal(cloneImage, await CopyOutAsync(node, "c1", File("c1.img")));
            Assert.Equal(beforeImage, await CopyOutAsync(node, "c2", File("c2.img")));

            // The clones go, then the snapshot can.
            await Cli.CheckAsync(node, "volume", "delete", "c1");
            await Cli.CheckAsync(node, "volume", "delete", "c2");
            Assert.False(System.IO.File.Exists(Path.Combine(_dataDir, "volumes", "c1.img.clone-map")), "a deleted clone's map goes with it");
            await Cli.CheckAsync(node, "snapshot", "delete", "vol0@before");
            Assert.Empty((await Cli.JsonAsync(node, "snapshot", "list")).EnumerateArray());
        }
        finally
        {
            await node.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_revert_brings_the_old_content_back_online_keeps_the_state_it_left_and_is_undone_by_reverting_to_that()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:16M");
        var old = Tool.RandomBytes(16 << 20, 11);
        var @new = Tool.RandomBytes(16 << 20, 12);
        await WriteAsync(node, "vol0", File("old.img"), old);
        var oldGeneration = (await Cli.JsonAsync(node, "volume", "history", "vol0")).EnumerateArray().Last().GetProperty("generation").GetInt64();
        await WriteAsync(node, "vol0", File("new.img"), @new);

        // A client stays connected across the revert and reads the old content on its next read.
        const string script = """
            import sys
            sys.stdout.write(h.pread(4096, 0).hex() + "\n"); sys.stdout.flush()
            sys.stdin.readline()
            sys.stdout.write(h.pread(4096, 0).hex() + "\n")
            """;
        var client = new System.Diagnostics.Process
        {
            StartInfo = new("nbdsh", ["-u", node.UnixUri("vol0"), "-c", script])
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false,
            },
        };
        client.StartInfo.Environment["PATH"] = "/usr/bin:/bin:" + Environment.GetEnvironmentVariable("PATH"); // Debian's python3 has the nbd module
        client.Start();
        Assert.Equal(Convert.ToHexString(@new, 0, 4096).ToLowerInvariant(), await client.StandardOutput.ReadLineAsync());

        var reverted = await Cli.JsonAsync(node, "volume", "revert", "vol0", "--generation", oldGeneration.ToString());
        Assert.Equal("done", reverted.GetProperty("state").GetString());
        Assert.Equal(16L << 20, reverted.GetProperty("total").GetInt64());
        await client.StandardInput.WriteLineAsync();
        Assert.Equal(Convert.ToHexString(old, 0, 4096).ToLowerInvariant(), await client.StandardOutput.ReadLineAsync());
        await client.WaitForExitAsync();
        Assert.Equal(old, await CopyOutAsync(node, "vol0", File("out.img")));

        // The state it left is a snapshot, and reverting to it undoes the revert; history before and after stays restorable.
        var undo = (await Cli.JsonAsync(node, "snapshot", "list", "vol0")).EnumerateArray().Single().GetProperty("name").GetString()!;
        Assert.StartsWith("pre-revert-", undo);
        await Cli.CheckAsync(node, "volume", "revert", "vol0", "--to", undo);
        Assert.Equal(@new, await CopyOutAsync(node, "vol0", File("out.img")));
        Assert.Equal(old, await CopyOutAsync(node, $"vol0@gen:{oldGeneration}", File("out.img")));
    }

    [Fact]
    public async Task Every_mistake_is_refused_with_a_clear_message_and_changes_nothing()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:16M");
        await WriteAsync(node, "vol0", File("a.img"), Tool.RandomBytes(1 << 20, 5));
        await Cli.CheckAsync(node, "snapshot", "create", "vol0", "s1");

        Assert.Contains("no volume named nope", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "create", "nope", "s1")));
        Assert.Contains("no snapshot named missing", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "delete", "vol0@missing")));
        Assert.Contains("already has a snapshot named s1", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "create", "vol0", "s1")));
        Assert.Contains("is not allowed", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "create", "vol0", "bad/name")));
        var outside = await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "create", "vol0", "old", "--at", "-5h"));
        Assert.Contains("is not restorable; restorable now: generation", outside); // names the oldest and newest points
        Assert.Contains("not restorable", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "create", "vol0", "g", "--generation", "999999")));
        Assert.Contains("no snapshot named 'nope'", await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "revert", "vol0", "--to", "nope")));
        Assert.Contains("no snapshot named nope", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "clone", "vol0@nope", "c9")));
        Assert.Contains("a volume named vol0 already exists", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "clone", "vol0@s1", "vol0")));
        Assert.Contains("the node refused", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "create", "vol0", "s2", "--token", "wrong")));

        // History is a write-back volume's: leaving write-back with a kept snapshot is refused, and a write-through volume keeps none.
        Assert.Contains("kept snapshot(s) or open view(s)", await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "mode", "vol0", "write-through")));
        await Cli.CheckAsync(node, "volume", "create", "wt", "--size", "16M", "--mode", "write-through");
        Assert.Contains("keeps no history", await Cli.RefusedAsync(1, Cli.RunAsync(node, "snapshot", "create", "wt", "s1")));

        // Usage mistakes exit 2 before anything is asked of the node.
        foreach (var args in new[]
                 {
                     new[] { "volume", "revert", "vol0" }, ["volume", "revert", "vol0", "--to", "s1", "--generation", "3"],
                     ["snapshot", "create", "vol0", "x", "--at", "yesterday"], ["snapshot", "delete", "vol0"], ["snapshot", "diff", "vol0@s1"],
                 })
        {
            var result = await Cli.RunAsync(node, args);
            Assert.True(result.ExitCode == 2, $"{string.Join(' ', args)}: {result.Output}");
        }

        // Help describes every verb, with examples.
        var help = await Cli.RunAsync("snapshot", "--help");
        Assert.Equal(0, help.ExitCode);
        foreach (var verb in new[] { "create <VOLUMES> <NAME>", "list <VOLUME>", "delete <VOL@SNAPSHOT>", "clone <VOL@SNAPSHOT> <NEWVOL>", "diff <FROM> <TO>" })
            Assert.Contains($"  {verb} ", help.Stdout);
        var volumeHelp = await Cli.RunAsync("volume", "--help");
        Assert.Contains("  history <NAME> ", volumeHelp.Stdout);
        Assert.Contains("  revert <NAME> ", volumeHelp.Stdout);
        Assert.Contains("Examples:", (await Cli.RunAsync("volume", "revert", "--help")).Stdout);

                // The API: no token is 401, malformed JSON 400, an unknown snapshot 404; each one JSON line.
        async Task<(HttpStatusCode, string)> SendAsync(HttpMethod method, string path, string? body, bool token)
        {
            using var request = new HttpRequestMessage(method, node.AdminUrl + path);
            if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            if (token) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", System.IO.File.ReadAllText(Path.Combine(_dataDir, "admin.token")).Trim());
            using var response = await Http.SendAsync(request);
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Post, "/api/snapshots", """{"volumes": ["vol0"], "name": "t"}""", false)).Item1);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Delete, "/api/snapshots/vol0/s1", null, false)).Item1);
        var (status, body) = await SendAsync(HttpMethod.Post, "/api/snapshots", """{"volumes": ["vol0"], "name": """, true);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("not valid JSON", JsonDocument.Parse(body).RootElement.GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(HttpMethod.Post, "/api/snapshots", """{"volumes": ["vol0"], "name": "t", "when": 1}""", true)).Item1);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Delete, "/api/snapshots/vol0/zzz", null, true)).Item1);
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(HttpMethod.Post, "/api/volumes/vol0/revert", "{}", true)).Item1);

        // Nothing changed: one snapshot, the volume as written.
        Assert.Equal(["s1"], (await Cli.JsonAsync(node, "snapshot", "list")).EnumerateArray().Select(s => s.GetProperty("name").GetString()));
    }
}
