using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Cache.Actors;
using ActorCache.Snapshots;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Persistence.Sql;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Tests;

/// <summary>
/// The snapshot service against a real cache and a real snapshot registry (SQLite): a point the cache expires while a snapshot
/// of it is being made (its hold dropped with every other kept snapshot's of that point) never leaves that snapshot listed as
/// valid and unprotected, to read data written after it once the destager passed the point.
/// </summary>
public sealed class SnapshotServiceTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("snapshot-service-").FullName;
    private ActorSystem _actors = null!;

    public Task InitializeAsync()
    {
        var store = $"Data Source={Path.Combine(_dir, "metadata.db")}";
        var config = ConfigurationFactory.ParseString($$"""
            akka.persistence.journal.plugin = "akka.persistence.journal.sql"
            akka.persistence.journal.sql { connection-string = "{{store}}", provider-name = "{{LinqToDB.ProviderName.SQLiteMS}}", auto-initialize = on }
            akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.sql"
            akka.persistence.snapshot-store.sql { connection-string = "{{store}}", provider-name = "{{LinqToDB.ProviderName.SQLiteMS}}", auto-initialize = on }
            akka.loglevel = WARNING
            """).WithFallback(SqlPersistence.DefaultConfiguration).WithFallback(CacheDispatchers.Hocon);
        _actors = ActorSystem.Create("snapshot-service", config);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _actors.Terminate();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Passes everything to the real registry; before a snapshot is recorded, runs <c>before</c> (the interleaving under test).</summary>
    private sealed class InterleavingRegistry : ReceiveActor
    {
        public InterleavingRegistry(IActorRef registry, Action<SnapshotRecord> before)
        {
            ReceiveAny(message =>
            {
                if (message is KeepSnapshot keep) before(keep.Snapshot);
                registry.Forward(message);
            });
        }
    }

    [Fact]
    public async Task A_snapshot_whose_point_expires_while_it_is_made_is_refused_and_not_recorded()
    {
        var definition = new VolumeDefinition("v", 4 << 20, VolumeMode.WriteBack, Path.Combine(_dir, "v.img"), true, false);
        var cache = WriteBackCache.Open("v", FileBacking.Open(definition.BackingPath, definition.Size, create: true), new RingBuffer(64L << 20), new CacheOptions
        {
            LogDirectory = Path.Combine(_dir, "log"), SegmentSize = 4 << 20, MaxBatchBlocks = 256, LogCapacity = 64 << 20, RetentionTime = TimeSpan.FromHours(1),
        }, CacheMode.WriteBack, NullLogger.Instance, _actors);
        await using var volume = new Volume(definition, cache);
        var snapshots = new SnapshotCatalog();
        var exports = new ExportCatalog("", snapshots);
        exports.Publish(volume);
        var registry = new ActorRegistry();
        SnapshotService service = null!;
        var real = _actors.ActorOf(Props.Create(() => new SnapshotRegistry()), "snapshots");
        // The cache expires the point (PointExpired -> MarkExpired) after the service protected it and before it is recorded.
        var expireFirst = true;
        Action<SnapshotRecord> expireBeforeRecording = record =>
        {
            if (record.Name == "late" && expireFirst) service.MarkExpired(record.Volume, record.Sequence);
        };
        registry.Register<SnapshotRegistry>(_actors.ActorOf(Props.Create(() => new InterleavingRegistry(real, expireBeforeRecording))));
        service = new SnapshotService(registry, exports, snapshots, new SnapshotClones(snapshots, exports, NullLogger<SnapshotClones>.Instance),
            NullLogger<SnapshotService>.Instance);
        await volume.WriteAsync(0, new byte[4096], fua: true);

        var refused = await Assert.ThrowsAsync<SnapshotRefusedException>(() => service.CreateAsync("v", "late", null, CancellationToken.None));
        Assert.Contains("expired while the snapshot was being made", refused.Message);
        Assert.Null(snapshots.Find("v", "late"));
        var recorded = await real.Ask<SnapshotList>(ListSnapshots.Instance, TimeSpan.FromSeconds(20));
        Assert.DoesNotContain(recorded.Snapshots, s => s.Name == "late");

        // Without an expiry in between the same request keeps its snapshot.
        expireFirst = false;
        var kept = await service.CreateAsync("v", "late", null, CancellationToken.None);
        Assert.Null(kept.Expired);
        Assert.NotNull(snapshots.Find("v", "late"));
    }
}
