using ActorCache.Testing;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence.Sql;
using Akka.TestKit.Xunit2;

namespace ActorCache.Tests;

/// <summary>The registry against real metadata stores: a SQLite file and a PostgreSQL server.</summary>
public abstract class VolumeRegistryTests : IAsyncLifetime
{
    protected abstract Task<(string ConnectionString, string Provider)> StoreAsync();
    protected virtual Task CleanupAsync() => Task.CompletedTask;
    private Config _config = Config.Empty;

    public async Task InitializeAsync()
    {
        var (connectionString, provider) = await StoreAsync();
        _config = ConfigurationFactory.ParseString($$"""
            akka.persistence.journal.plugin = "akka.persistence.journal.sql"
            akka.persistence.journal.sql { connection-string = "{{connectionString}}", provider-name = "{{provider}}", auto-initialize = on }
            akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.sql"
            akka.persistence.snapshot-store.sql { connection-string = "{{connectionString}}", provider-name = "{{provider}}", auto-initialize = on }
            akka.loglevel = WARNING
            """).WithFallback(SqlPersistence.DefaultConfiguration);
    }

    public Task DisposeAsync() => CleanupAsync();

    private static VolumeDefinition Def(string name, string path = "") =>
        new(name, 1 << 30, VolumeMode.PassThrough, path.Length == 0 ? $"/data/{name}.img" : path, true, false);

    [Fact]
    public void Records_volumes_and_refuses_duplicates_then_recovers_them_after_restart()
    {
        using (var kit = new TestKit(_config, "first"))
        {
            var registry = kit.Sys.ActorOf(Props.Create(() => new VolumeRegistry()));
            registry.Tell(GetVolumes.Instance, kit.TestActor);
            Assert.Empty(kit.ExpectMsg<VolumeList>(TimeSpan.FromSeconds(20)).Volumes);

            registry.Tell(new DefineVolume(Def("vol0")), kit.TestActor);
            Assert.Equal("vol0", kit.ExpectMsg<VolumeAccepted>(TimeSpan.FromSeconds(20)).Definition.Name);
            registry.Tell(new DefineVolume(Def("vol1")), kit.TestActor);
            kit.ExpectMsg<VolumeAccepted>(TimeSpan.FromSeconds(20));

            registry.Tell(new DefineVolume(Def("vol0", "/elsewhere.img")), kit.TestActor);
            Assert.Contains("already exists", kit.ExpectMsg<VolumeRejected>(TimeSpan.FromSeconds(20)).Reason);
            registry.Tell(new DefineVolume(Def("vol2", "/data/vol1.img")), kit.TestActor);
            Assert.Contains("already belongs to volume vol1", kit.ExpectMsg<VolumeRejected>(TimeSpan.FromSeconds(20)).Reason);
        }

        using (var kit = new TestKit(_config, "second"))
        {
            var registry = kit.Sys.ActorOf(Props.Create(() => new VolumeRegistry()));
            registry.Tell(GetVolumes.Instance, kit.TestActor);
            var volumes = kit.ExpectMsg<VolumeList>(TimeSpan.FromSeconds(20)).Volumes;
            Assert.Equal([Def("vol0"), Def("vol1")], volumes);
        }
    }

    [Fact]
    public void Resized_and_deleted_volumes_stay_that_way_after_restart_and_a_deleted_name_can_be_defined_again()
    {
        using (var kit = new TestKit(_config, "first"))
        {
            var registry = kit.Sys.ActorOf(Props.Create(() => new VolumeRegistry()));
            foreach (var name in new[] { "a", "b", "c" })
            {
                registry.Tell(new DefineVolume(Def(name)), kit.TestActor);
                kit.ExpectMsg<VolumeAccepted>(TimeSpan.FromSeconds(20));
            }
            registry.Tell(new ResizeVolume("a", 3L << 30), kit.TestActor);
            Assert.Equal(new VolumeResized("a", 3L << 30), kit.ExpectMsg<VolumeResized>(TimeSpan.FromSeconds(20)));
            registry.Tell(new ResizeVolume("a", 1L << 30), kit.TestActor);
            Assert.Contains("only grows", kit.ExpectMsg<VolumeRejected>(TimeSpan.FromSeconds(20)).Reason);
            registry.Tell(new ResizeVolume("nope", 1L << 30), kit.TestActor);
            Assert.Contains("no volume named nope", kit.ExpectMsg<VolumeRejected>(TimeSpan.FromSeconds(20)).Reason);

            registry.Tell(new DeleteVolume("b"), kit.TestActor);
            Assert.Equal(new VolumeDeleted("b"), kit.ExpectMsg<VolumeDeleted>(TimeSpan.FromSeconds(20)));
            registry.Tell(new DeleteVolume("b"), kit.TestActor);
            Assert.Contains("no volume named b", kit.ExpectMsg<VolumeRejected>(TimeSpan.FromSeconds(20)).Reason);
            registry.Tell(new DeleteVolume("c"), kit.TestActor);
            kit.ExpectMsg<VolumeDeleted>(TimeSpan.FromSeconds(20));
            // A deleted volume's name and backing are free again.
            registry.Tell(new DefineVolume(Def("c", "/data/b.img")), kit.TestActor);
            kit.ExpectMsg<VolumeAccepted>(TimeSpan.FromSeconds(20));
        }

        using (var kit = new TestKit(_config, "second"))
        {
            var registry = kit.Sys.ActorOf(Props.Create(() => new VolumeRegistry()));
            registry.Tell(GetVolumes.Instance, kit.TestActor);
            var volumes = kit.ExpectMsg<VolumeList>(TimeSpan.FromSeconds(20)).Volumes;
            Assert.Equal([Def("a") with { Size = 3L << 30 }, Def("c", "/data/b.img")], volumes);
        }
    }
}

public sealed class SqliteVolumeRegistryTests : VolumeRegistryTests
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-sqlite-").FullName;

    protected override Task<(string, string)> StoreAsync() =>
        Task.FromResult(($"Data Source={Path.Combine(_dir, "metadata.db")}", LinqToDB.ProviderName.SQLiteMS));

    protected override Task CleanupAsync()
    {
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }
}

public sealed class PostgresVolumeRegistryTests : VolumeRegistryTests
{
    private PostgresServer? _server;

    protected override async Task<(string, string)> StoreAsync()
    {
        _server = await PostgresServer.StartAsync();
        return (await _server.CreateDatabaseAsync("registry"), LinqToDB.ProviderName.PostgreSQL15);
    }

    protected override async Task CleanupAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }
}
