using System.Text.Json;
using ActorCache.Testing;

namespace ActorCache.Integration.Tests;

/// <summary>The node keeping its metadata in a real PostgreSQL server instead of SQLite.</summary>
public sealed class PostgresNodeTests : IAsyncLifetime
{
    private readonly string _dataDir = NodeProcess.NewDataDir();
    private PostgresServer _postgres = null!;

    public async Task InitializeAsync() => _postgres = await PostgresServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _postgres.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
    }

    [Fact]
    public async Task Volumes_recorded_in_postgresql_survive_a_restart()
    {
        var connection = await _postgres.CreateDatabaseAsync("actorcache");
        string[] metadata = ["--set", "actorcache.metadata.provider = postgresql", "--set", $"actorcache.metadata.connection-string = \"{connection}\""];
        await using (var node = await NodeProcess.StartAsync(_dataDir, [.. metadata, "--volume", "pg1:64M", "--volume", "pg2:32M"]))
            Assert.Equal(0, (await node.StopAsync()).ExitCode);
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")), "nothing went to SQLite");

        await using (var node = await NodeProcess.StartAsync(_dataDir, metadata))
        {
            var json = await Tool.CheckAsync("nbdinfo", "--list", "--json", node.TcpUri(""));
            var names = JsonDocument.Parse(json).RootElement.GetProperty("exports").EnumerateArray()
                .Select(e => e.GetProperty("export-name").GetString()).Order();
            Assert.Equal(["pg1", "pg2"], names);
        }
    }

    [Fact]
    public async Task A_thousand_snapshots_of_one_volume_recorded_in_postgresql_survive_kill_9()
    {
        var connection = await _postgres.CreateDatabaseAsync("snapshots");
        string[] metadata = ["--set", "actorcache.metadata.provider = postgresql", "--set", $"actorcache.metadata.connection-string = \"{connection}\""];
        var image = Path.Combine(_dataDir, "in.img");
        await File.WriteAllBytesAsync(image, Tool.RandomBytes(1 << 20, 7));
        using var http = new HttpClient();
        var node = await NodeProcess.StartAsync(_dataDir, [.. metadata, "--volume", "pg1:16M"]);
        try
        {
            await Tool.CheckAsync("nbdcopy", "--flush", image, node.UnixUri("pg1"));
            var token = (await File.ReadAllTextAsync(Path.Combine(_dataDir, "admin.token"))).Trim();
            for (var i = 0; i < 1000; i++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, node.AdminUrl + "/api/snapshots")
                {
                    Content = new StringContent($$"""{"volumes": ["pg1"], "name": "s{{i}}"}""", System.Text.Encoding.UTF8, "application/json"),
                };
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
                using var response = await http.SendAsync(request);
                Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            }
            await node.KillAsync();
            await node.DisposeAsync();
            Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")), "nothing went to SQLite");

            node = await NodeProcess.StartAsync(_dataDir, metadata);
            Assert.Equal(1000, (await Cli.JsonAsync(node, "snapshot", "list", "pg1")).GetArrayLength());
            var back = Path.Combine(_dataDir, "out.img");
            await Tool.CheckAsync("nbdcopy", node.UnixUri("pg1@s999"), back);
            var expected = await File.ReadAllBytesAsync(image);
            var read = await File.ReadAllBytesAsync(back);
            Assert.True(read.AsSpan(0, 1 << 20).SequenceEqual(expected), "the snapshot reads what was written");
        }
        finally
        {
            await node.DisposeAsync();
        }
    }
}
