using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// The admin API as any HTTP client sees it (changes need the token, every error is one JSON line with
/// the status that says whose mistake it was), the token file, and every way to get the command line wrong.
/// </summary>
public sealed class AdminApiTests : IDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static UnixFileMode ModeOf(string file) => OperatingSystem.IsWindows() ? UnixFileMode.None : File.GetUnixFileMode(file);

    private static string Token(NodeProcess node) => File.ReadAllText(Path.Combine(node.DataDir, "admin.token")).Trim();

    private static async Task<(HttpStatusCode Status, string Body, HttpResponseMessage Response)> SendAsync(NodeProcess node, HttpMethod method,
        string path, string? body = null, string? token = "node")
    {
        using var request = new HttpRequestMessage(method, node.AdminUrl + path);
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token == "node" ? Token(node) : token);
        var response = await Http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(), response);
    }

    /// <summary>An error answer: the status, and a body that is exactly {"error": "one line"}; returns the line.</summary>
    private static string AssertError(HttpStatusCode expected, (HttpStatusCode Status, string Body, HttpResponseMessage Response) answer)
    {
        Assert.True(answer.Status == expected, $"expected {(int)expected}, got {(int)answer.Status}: {answer.Body}");
        Assert.Equal("application/json", answer.Response.Content.Headers.ContentType?.MediaType);
        using var json = JsonDocument.Parse(answer.Body);
        var property = Assert.Single(json.RootElement.EnumerateObject());
        Assert.Equal("error", property.Name);
        var error = property.Value.GetString()!;
        Assert.DoesNotContain('\n', error);
        Assert.DoesNotContain("   at ", error);
        return error;
    }

    private static async Task<List<string>> VolumeNamesAsync(NodeProcess node)
    {
        var (status, body, _) = await SendAsync(node, HttpMethod.Get, "/api/volumes", token: null);
        Assert.Equal(HttpStatusCode.OK, status);
        return JsonDocument.Parse(body).RootElement.GetProperty("volumes").EnumerateArray().Select(v => v.GetProperty("name").GetString()!).ToList();
    }

    [Fact]
    public async Task Changes_without_the_token_or_with_a_wrong_one_get_401_and_change_nothing_and_reads_need_none()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M");
        Assert.Equal(["vol0"], await VolumeNamesAsync(node));
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(node, HttpMethod.Get, "/api/volumes/vol0", token: null)).Status);

        var create = """{"name": "v1", "size": "64M"}""";
        foreach (var token in new string?[] { null, "0123456789abcdef", Token(node) + "0" })
        {
            var missing = token is null;
            var error = AssertError(HttpStatusCode.Unauthorized, await SendAsync(node, HttpMethod.Post, "/api/volumes", create, token));
            Assert.Contains(missing ? "needs its admin token" : "the admin token is wrong", error);
            Assert.Contains("admin.token", error);
            var (_, _, response) = await SendAsync(node, HttpMethod.Delete, "/api/volumes/vol0", token: token);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            AssertError(HttpStatusCode.Unauthorized, await SendAsync(node, HttpMethod.Post, "/api/volumes/vol0/resize", """{"size": "1G"}""", token));
            AssertError(HttpStatusCode.Unauthorized, await SendAsync(node, HttpMethod.Post, "/api/volumes/vol0/mode", """{"mode": "write-through"}""", token));
        }
        Assert.Equal(["vol0"], await VolumeNamesAsync(node));
        Assert.Equal(64L << 20, new FileInfo(Path.Combine(_dataDir, "volumes", "vol0.img")).Length);
        Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "v1.img")));

        // The command line says so, and where its token came from.
        var wrong = await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "v1", "--size", "64M", "--token", "nope"));
        Assert.Equal("actorcache: the node refused: the admin token is wrong; the node writes a new one to DATA_DIR/admin.token at every start " +
                     "(the token given with --token)", wrong);
        var elsewhere = Directory.CreateDirectory(Path.Combine(_dataDir, "elsewhere")).FullName;
        var none = await Cli.RefusedAsync(1, Cli.RunAsync("volume", "delete", "vol0", "--node", node.AdminUrl, "--data-dir", elsewhere));
        Assert.StartsWith("actorcache: the node refused: this request changes the node and needs its admin token", none);
        Assert.EndsWith($"(no token: {elsewhere}/admin.token does not exist; give --token, or --data-dir with the node's data directory)", none);
        // Reads need no token.
        Assert.Equal(0, (await Cli.RunAsync("volume", "list", "--node", node.AdminUrl, "--data-dir", elsewhere)).ExitCode);

        Assert.Equal(201, (int)(await SendAsync(node, HttpMethod.Post, "/api/volumes", create)).Status);
        Assert.Equal(["v1", "vol0"], await VolumeNamesAsync(node));
    }

    [Fact]
    public async Task Bad_requests_get_400_unknown_volumes_404_conflicts_409_each_as_one_json_error()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M", "--volume", "plain:64M:pass-through");
        var post = HttpMethod.Post;

        // Malformed or unexpected bodies.
        Assert.StartsWith("the request body is not valid JSON for this endpoint: ", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes", """{"name": "x", """)));
        Assert.StartsWith("the request body is not valid JSON", AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes", "")));
        Assert.StartsWith("the request body is not valid JSON", AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes", "[1, 2]")));
        Assert.Contains("not null", AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes", "null")));
        Assert.Equal("unknown field 'sise'; this endpoint takes name, size, mode, backing, readOnly, replicas, protocol",
            AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes", """{"name": "x", "sise": "1G"}""")));
        Assert.StartsWith("the request body is not valid JSON for this endpoint in field 'name': the value has the wrong type",
            AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes", """{"name": 5, "size": "1G"}""")));
        Assert.StartsWith("size is required", AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes", """{"name": "x"}""")));
        Assert.StartsWith("name is required", AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes", """{"size": 4096}""")));
        Assert.Contains("'1Q' has an unknown unit", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes", """{"name": "x", "size": "1Q"}""")));
        Assert.Equal("volume x: size 1001 is not a multiple of 4 KiB", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes", """{"name": "x", "size": 1001}""")));
        Assert.StartsWith("volume name 'a/b' is not allowed", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes", """{"name": "a/b", "size": "1G"}""")));
        Assert.Equal("volume x: unknown mode 'fast'; use write-back, write-through or pass-through", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes", """{"name": "x", "size": "1G", "mode": "fast"}""")));
        Assert.StartsWith("the request body is not valid JSON", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes/vol0/resize", "{size: 1}")));
        Assert.Equal("unknown mode 'fast'; use write-back, write-through or pass-through",
            AssertError(HttpStatusCode.BadRequest, await SendAsync(node, post, "/api/volumes/vol0/mode", """{"mode": "fast"}""")));
        Assert.Equal("?force=banana: use true or false", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, HttpMethod.Delete, "/api/volumes/vol0?force=banana")));

        // Unknown volumes, unknown endpoints.
        const string unknown = "no volume named nope; 'actorcache volume list' shows the node's volumes";
        Assert.Equal(unknown, AssertError(HttpStatusCode.NotFound, await SendAsync(node, HttpMethod.Get, "/api/volumes/nope")));
        Assert.Equal(unknown, AssertError(HttpStatusCode.NotFound, await SendAsync(node, HttpMethod.Delete, "/api/volumes/nope")));
        Assert.Equal(unknown, AssertError(HttpStatusCode.NotFound, await SendAsync(node, post, "/api/volumes/nope/resize", """{"size": "1G"}""")));
        Assert.Equal(unknown, AssertError(HttpStatusCode.NotFound, await SendAsync(node, post, "/api/volumes/nope/mode", """{"mode": "write-back"}""")));
        Assert.StartsWith("no such endpoint: GET /api/nothing", AssertError(HttpStatusCode.NotFound, await SendAsync(node, HttpMethod.Get, "/api/nothing")));
        Assert.StartsWith("no operation nope", AssertError(HttpStatusCode.NotFound, await SendAsync(node, HttpMethod.Get, "/api/operations/nope")));

        // Conflicts with what the node has.
        Assert.StartsWith("a volume named vol0 already exists", AssertError(HttpStatusCode.Conflict,
            await SendAsync(node, post, "/api/volumes", """{"name": "vol0", "size": "64M"}""")));
        Assert.Equal("volume vol0 is 64M; shrinking is refused (it would cut off data)", AssertError(HttpStatusCode.Conflict,
            await SendAsync(node, post, "/api/volumes/vol0/resize", """{"size": "32M"}""")));
        Assert.StartsWith("volume plain: switching between pass-through and the cached modes needs a restart", AssertError(HttpStatusCode.Conflict,
            await SendAsync(node, post, "/api/volumes/plain/mode", """{"mode": "write-back"}""")));
        Assert.StartsWith("volume vol0: switching between pass-through and the cached modes needs a restart", AssertError(HttpStatusCode.Conflict,
            await SendAsync(node, post, "/api/volumes/vol0/mode", """{"mode": "pass-through"}""")));
        Assert.Equal(["plain", "vol0"], await VolumeNamesAsync(node));

        // A bad ?wait is refused before anything starts: the switch did not happen.
        Assert.Equal("?wait=maybe: use true or false", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes/vol0/mode?wait=maybe", """{"mode": "write-through"}""")));
        Assert.Equal("?wait=False2: use true or false", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/volumes/vol0/revert?wait=False2", """{"generation": 1}""")));
        var (_, vol0, _) = await SendAsync(node, HttpMethod.Get, "/api/volumes/vol0");
        Assert.Equal("write-back", System.Text.Json.JsonDocument.Parse(vol0).RootElement.GetProperty("mode").GetString());
        // A verify that cannot run is refused as an answer (409/404), even with ?wait=false, not started as an operation that fails.
        Assert.Contains("not replicated", AssertError(HttpStatusCode.Conflict, await SendAsync(node, post, "/api/volumes/vol0/verify?wait=false")));
        Assert.Equal(unknown, AssertError(HttpStatusCode.NotFound, await SendAsync(node, post, "/api/volumes/nope/verify?wait=false")));
        Assert.Contains("not replicated", await Cli.RefusedAsync(1, Cli.RunAsync(node, "peer", "verify", "vol0")));
        Assert.StartsWith("volumes names volumes: no null or empty entries", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(node, post, "/api/snapshots", """{"volumes": ["vol0", null], "name": "a"}""")));

        // The command line: exit 1 and the node's reason, for every verb that names a volume.
        foreach (var verb in new[] { new[] { "status", "nope" }, ["delete", "nope"], ["resize", "nope", "--size", "1G"], ["mode", "nope", "write-back"] })
            Assert.Equal($"actorcache: {unknown}", await Cli.RefusedAsync(1, Cli.RunAsync(node, ["volume", .. verb])));
        Assert.StartsWith("actorcache: a volume named vol0 already exists",
            await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "create", "vol0", "--size", "64M")));
        Assert.StartsWith("actorcache: volume plain: switching between pass-through and the cached modes needs a restart",
            await Cli.RefusedAsync(1, Cli.RunAsync(node, "volume", "mode", "plain", "write-back")));
    }

    [Fact]
    public async Task A_mode_switch_is_an_operation_with_the_drains_progress_and_status_answers_while_it_runs()
    {
        // A slow backing (every write 300 ms) so the drain of 16 MiB takes seconds.
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M", "--set", "actorcache.cache.backing-write-delay=300ms");
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 16M", "-c", "flush", node.TcpUri("vol0"));

        var (status, body, response) = await SendAsync(node, HttpMethod.Post, "/api/volumes/vol0/mode?wait=false", """{"mode": "write-through"}""");
        Assert.Equal(HttpStatusCode.Accepted, status);
        var started = JsonDocument.Parse(body).RootElement;
        var id = started.GetProperty("id").GetString()!;
        Assert.Equal("volume-mode", started.GetProperty("kind").GetString());
        Assert.Equal("vol0", started.GetProperty("target").GetString());
        Assert.Equal("switch vol0 to write-through", started.GetProperty("description").GetString());
        Assert.Equal(16L << 20, started.GetProperty("total").GetInt64()); // the cached bytes the drain moves

        var during = JsonDocument.Parse((await SendAsync(node, HttpMethod.Get, "/api/volumes/vol0", token: null)).Body).RootElement;
        Assert.Equal("write-through", during.GetProperty("switchingTo").GetString()); // answered while the drain runs
        Assert.Equal("write-back", during.GetProperty("mode").GetString());
        // Changes its actor would hold until the switch ends are refused meanwhile (a deletion went on after a timeout and
        // removed the files of the volume still open; a resize timed out with 500 and then happened anyway).
        Assert.StartsWith("volume vol0 is switching to write-through", AssertError(HttpStatusCode.Conflict,
            await SendAsync(node, HttpMethod.Delete, "/api/volumes/vol0?force=true")));
        Assert.StartsWith("volume vol0 is switching to write-through", AssertError(HttpStatusCode.Conflict,
            await SendAsync(node, HttpMethod.Post, "/api/volumes/vol0/resize", """{"size": "128M"}""")));

        JsonElement operation;
        var states = new List<string>();
        do
        {
            await Task.Delay(100);
            operation = JsonDocument.Parse((await SendAsync(node, HttpMethod.Get, $"/api/operations/{id}", token: null)).Body).RootElement;
            states.Add(operation.GetProperty("state").GetString()!);
        } while (operation.GetProperty("state").GetString() == "running");
        Assert.True(states.Count > 1 && states[0] == "running", string.Join(", ", states));
        Assert.Equal("done", operation.GetProperty("state").GetString());
        Assert.Equal(16L << 20, operation.GetProperty("done").GetInt64());
        Assert.Equal(JsonValueKind.Null, operation.GetProperty("error").ValueKind);
        Assert.NotEqual(JsonValueKind.Null, operation.GetProperty("finishedAt").ValueKind);
        var after = await Cli.JsonAsync(node, "volume", "status", "vol0");
        Assert.Equal("write-through", after.GetProperty("mode").GetString());
        Assert.Equal(JsonValueKind.Null, after.GetProperty("switchingTo").ValueKind);
        Assert.Equal(0, after.GetProperty("cachedBytes").GetInt64());

        var all = JsonDocument.Parse((await SendAsync(node, HttpMethod.Get, "/api/operations", token: null)).Body).RootElement;
        Assert.Contains(id, all.EnumerateArray().Select(o => o.GetProperty("id").GetString()));
    }

    [Fact]
    public async Task The_token_file_is_0600_new_at_every_start_and_removed_by_a_clean_stop()
    {
        var file = Path.Combine(_dataDir, "admin.token");
        string first;
        await using (var node = await NodeProcess.StartAsync(_dataDir))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, ModeOf(file));
            first = Token(node);
            Assert.Matches("^[0-9a-f]{64}$", first);
            Assert.Equal(0, (await node.StopAsync()).ExitCode);
        }
        Assert.False(File.Exists(file), "a clean stop removes the token with admin.url");
        await using (var node = await NodeProcess.StartAsync(_dataDir))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, ModeOf(file));
            Assert.NotEqual(first, Token(node));
            // The old token no longer opens anything.
            AssertError(HttpStatusCode.Unauthorized, await SendAsync(node, HttpMethod.Post, "/api/volumes", """{"name": "x", "size": "64M"}""", first));
            await node.KillAsync();
        }
        Assert.True(File.Exists(file), "a killed node leaves it behind (the next start replaces it)");
        await using (var node = await NodeProcess.StartAsync(_dataDir))
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, ModeOf(file));
    }

    [Fact]
    public async Task Without_a_node_to_talk_to_the_command_line_exits_1_and_says_where_it_looked()
    {
        Assert.Equal("actorcache: cannot reach the node at http://127.0.0.1:1/: Connection refused (is a node running there?)",
            await Cli.RefusedAsync(1, Cli.RunAsync("volume", "list", "--node", "http://127.0.0.1:1")));
        Assert.Equal($"actorcache: no node to talk to: {_dataDir}/admin.url does not exist; is a node running there?",
            await Cli.RefusedAsync(1, Cli.RunAsync("volume", "status", "vol0", "--data-dir", _dataDir)));
        // Without --data-dir: ./data, from where the command runs.
        var result = await Tool.RunAsync("sh", ["-c", $"cd {_dataDir} && dotnet {NodeProcess.NodeDll} volume list"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"actorcache: no node to talk to: {_dataDir}/data/admin.url does not exist; is a node running with data directory " +
                     $"{_dataDir}/data? Give --data-dir DIR or --node URL\n", result.Stderr);
        // Something that is not a node.
        using var squatter = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var accept = Task.Run(async () =>
        {
            using var client = await squatter.AcceptTcpClientAsync();
            var stream = client.GetStream();
            await stream.ReadAtLeastAsync(new byte[4096], 1); // the request, or enough of it
            await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"u8.ToArray());
        });
        Assert.Equal($"actorcache: http://127.0.0.1:{port}/ answered 200 with something other than the admin API's JSON; is --node an ActorCache node's admin URL?",
            await Cli.RefusedAsync(1, Cli.RunAsync("volume", "list", "--node", $"http://127.0.0.1:{port}")));
        await accept;
    }

    [Theory]
    [InlineData("volume create v1", "Option '--size' is required.")]
    [InlineData("volume create --size 1G", "Required argument missing for command: 'create'.")]
    [InlineData("volume create v1 --size 1001", "volume v1: size 1001 is not a multiple of 4 KiB")]
    [InlineData("volume create v1 --size 12Q", "volume v1: '12Q' has an unknown unit; use K, M, G, T or P")]
    [InlineData("volume create v1 --size 1G --mode fast", "unknown mode 'fast'; use write-back, write-through or pass-through")]
    [InlineData("volume create a/b --size 1G", "volume name 'a/b' is not allowed")]
    [InlineData("volume resize v1 --size 0", "volume v1: size must be greater than zero")]
    [InlineData("volume resize v1", "Option '--size' is required.")]
    [InlineData("volume mode v1 fast", "unknown mode 'fast'; use write-back, write-through or pass-through")]
    [InlineData("volume mode v1", "Required argument missing for command: 'mode'.")]
    [InlineData("volume status", "Required argument missing for command: 'status'.")]
    [InlineData("volume delete v1 --forcefully", "Unrecognized command or argument '--forcefully'.")]
    [InlineData("volume list --node banana", "--node 'banana' is not a node's admin URL")]
    [InlineData("volume", "Required command was not provided.")]
    [InlineData("volume grow v1", "Unrecognized command or argument 'grow'.")]
    public async Task Usage_mistakes_exit_2_before_anything_is_asked_of_a_node(string command, string message)
    {
        var result = await Cli.RunAsync(command.Split(' '));
        Assert.True(result.ExitCode == 2, result.Output);
        Assert.StartsWith("actorcache: ", result.Stderr);
        Assert.Contains($"actorcache: {message}", result.Stderr);
        Assert.Contains("--help' for the", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public async Task Help_describes_every_verb_with_examples_and_exits_0()
    {
        var volume = await Cli.RunAsync("volume", "--help");
        Assert.Equal(0, volume.ExitCode);
        foreach (var verb in new[] { "list", "status <NAME>", "create <NAME>", "delete <NAME>", "resize <NAME>", "mode <NAME> <MODE>" })
            Assert.Contains($"  {verb} ", volume.Stdout);
        Assert.Contains("Exit codes: 0 done, 1 refused or failed", volume.Stdout);
        var create = await Cli.RunAsync("volume", "create", "--help"); // help even though NAME and --size are missing
        Assert.Equal(0, create.ExitCode);
        Assert.Contains("--size <SIZE> (REQUIRED)", create.Stdout);
        Assert.Contains("--token <TOKEN>", create.Stdout);
        Assert.Contains("Examples:\n  actorcache volume create vol1 --size 10G", create.Stdout);
        var root = await Cli.RunAsync("--help");
        Assert.Contains("  volume ", root.Stdout);
        Assert.Contains("  serve ", root.Stdout);
    }
}
