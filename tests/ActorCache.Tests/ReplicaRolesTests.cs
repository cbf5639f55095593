using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Cache.Actors;
using ActorCache.Hosting;
using ActorCache.Replicas;
using ActorCache.Volumes;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Tests;

/// <summary>
/// A replica's role decides who may write through its volume: only the serving primary. A primary that takes a set naming
/// another node (it adopted a newer primary's set after a cut) must not acknowledge one more write from a client still
/// attached: the new primary's resync would overwrite it.
/// </summary>
public sealed class ReplicaRolesTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("replica-roles-").FullName;
    private readonly ActorSystem _actors = ActorSystem.Create("replica-roles", CacheDispatchers.Hocon);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _actors.Terminate();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_primary_that_adopts_a_set_naming_another_primary_fails_writes_of_clients_still_attached()
    {
        var settings = NodeSettingsLoader.Load(new ServeFlags(null, _dir, [], [], [], NodeName: "a"));
        var set = new ReplicaSet(["a", "b"], "C", "a", 1);
        var definition = new VolumeDefinition("r", 16 << 20, VolumeMode.WriteBack, Path.Combine(_dir, "r.img"), true, false) { Replicas = set };
        var cache = WriteBackCache.Open("r", FileBacking.Open(definition.BackingPath, definition.Size, create: true), new RingBuffer(64L << 20), new CacheOptions
        {
            LogDirectory = Path.Combine(_dir, "log"), SegmentSize = 4 << 20, MaxBatchBlocks = 256, LogCapacity = 64 << 20, RetentionTime = TimeSpan.FromHours(1),
        }, CacheMode.WriteBack, NullLogger.Instance, _actors);
        await using var volume = new Volume(definition, cache);
        var catalog = new ExportCatalog("");
        catalog.Publish(volume);
        await using var roles = new ReplicaRoles(settings, catalog, new PeerEndpoints(_actors, NullLogger<PeerEndpoints>.Instance), NullLoggerFactory.Instance);
        roles.Opened(volume);
        // Opened as primary, not confirmed by its peers yet: it takes no writes.
        var unconfirmed = await Assert.ThrowsAsync<BlockTargetException>(() => volume.WriteAsync(0, new byte[4096], fua: false).AsTask());
        Assert.Contains("being confirmed", unconfirmed.Message);
        await roles.ConfirmAsync("r");
        Assert.True(roles.IsServingPrimary("r"));
        await volume.WriteAsync(0, new byte[4096], fua: false);
        await volume.FlushAsync();

        // Before it looks at its marks of unshared writes, a primary about to adopt a set naming another node stops writes: none
        // may be acknowledged (and marked) after the look. Should the adoption not happen, its guard comes back.
        var guard = roles.TakeGuard("r", "handing over");
        Assert.NotNull(guard);
        Assert.Null(roles.TakeGuard("r", "again")); // fenced already: nothing to give back twice
        Assert.Contains("handing over", (await Assert.ThrowsAsync<BlockTargetException>(() => volume.WriteAsync(0, new byte[4096], fua: false).AsTask())).Message);
        await volume.FlushAsync();
        roles.RestoreGuard("r", guard);
        await volume.WriteAsync(0, new byte[4096], fua: false);

        // b was promoted while this node was cut off, and this node adopts its set (ReplicatedVolumes.AdoptNewerAsync -> RecordAsync).
        await roles.ApplyAsync("r", set with { Primary = "b", Epoch = 2 });

        Assert.False(roles.IsServingPrimary("r"));
        var refused = await Assert.ThrowsAsync<BlockTargetException>(() => volume.WriteAsync(0, new byte[4096], fua: false).AsTask());
        Assert.Equal(BlockError.Io, refused.Error);
        Assert.Contains("its primary is node b", refused.Message);
        await Assert.ThrowsAsync<BlockTargetException>(() => volume.WriteZeroesAsync(0, 4096, false, false, fua: true).AsTask());
        await Assert.ThrowsAsync<BlockTargetException>(() => volume.TrimAsync(0, 4096, fua: false).AsTask());
        await volume.FlushAsync(); // promises nothing new; a snapshot of a secondary flushes through it
        // A failed discard on a secondary puts the secondary's fence back, not nothing.
        roles.TakeGuard("r", "discarding");
        roles.RestoreGuard("r", null);
        Assert.Contains("its primary is node b", (await Assert.ThrowsAsync<BlockTargetException>(() => volume.WriteAsync(0, new byte[4096], fua: false).AsTask())).Message);
    }
}
