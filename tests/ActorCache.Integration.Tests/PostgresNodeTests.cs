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
}
