using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Cache.Actors;
using ActorCache.Nbd;
using ActorCache.Snapshots;
using ActorCache.Volumes;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Tests;

/// <summary>
/// The catalog's dirty bitmaps over a real write-back volume: kept snapshots and points resolve as they
/// do in export names, the live volume and views of its past are diffed from them, and only snapshots
/// older than the export are listed.
/// </summary>
public sealed class ExportCatalogTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-exports-").FullName;
    private readonly RingBuffer _ring = new(64L << 20);
    private readonly ActorSystem _actors = ActorSystem.Create("exports", CacheDispatchers.Hocon);
    private readonly SnapshotCatalog _snapshots = new();
    private ExportCatalog _catalog = null!;
    private Volume _volume = null!;

    public Task InitializeAsync()
    {
        var definition = new VolumeDefinition("v", 16 << 20, VolumeMode.WriteBack, Path.Combine(_dir, "v.img"), true, false);
        var cache = WriteBackCache.Open("v", FileBacking.Open(definition.BackingPath, definition.Size, create: true), _ring, new CacheOptions
        {
            LogDirectory = Path.Combine(_dir, "log"),
            SegmentSize = 4 << 20,
            MaxBatchBlocks = 256,
            LogCapacity = 64 << 20,
            RetentionTime = TimeSpan.FromHours(1),
        }, CacheMode.WriteBack, NullLogger.Instance, _actors);
        _volume = new Volume(definition, cache);
        _catalog = new ExportCatalog("", _snapshots);
        _catalog.Publish(_volume);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _volume.DisposeAsync();
        await _actors.Terminate();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Writes each 4 KiB block, flushes, and returns the sync point that FLUSH made.</summary>
    private async Task<SyncPoint> WriteAndFlushAsync(params long[] blocks)
    {
        foreach (var block in blocks) await _volume.WriteAsync(block * 4096, Enumerable.Repeat((byte)0x5a, 4096).ToArray(), fua: false);
        await _volume.FlushAsync();
        var keep = new KeepPoint(PointQuery.Newest);
        Assert.True(await _volume.TrySendAsync(keep));
        return keep.Result!.Value;
    }

    private void Keep(string name, SyncPoint point, DateTimeOffset? expired = null) =>
        _snapshots.Add(new SnapshotRecord("v", name, point.Generation, point.TimeMicros, point.Sequence, point.EndAddress, DateTimeOffset.UtcNow)
            { Expired = expired });

    private static (long Offset, long Length) Blocks(long first, long count) => (first * 4096, count * 4096);

    [Fact]
    public async Task A_kept_snapshot_or_a_point_is_a_bitmap_of_the_live_volume_and_of_later_views()
    {
        var first = await WriteAndFlushAsync(0, 1, 2);
        Keep("first", first);
        var second = await WriteAndFlushAsync(10, 11, 100);
        Keep("second", second);
        await WriteAndFlushAsync(11, 200);
        Assert.True(_catalog.TryGet("v", out var live));

        Assert.Equal(["first", "second"], _catalog.DirtyBitmaps(live));
        Assert.Equal([Blocks(10, 2), Blocks(100, 1), Blocks(200, 1)], await _catalog.DirtyRangesAsync(live, "first", default));
        Assert.Equal([Blocks(11, 1), Blocks(200, 1)], await _catalog.DirtyRangesAsync(live, $"gen:{second.Generation}", default));

        var view = (await _catalog.OpenAsync("v@second", default))!;
        try
        {
            Assert.Equal(["first"], _catalog.DirtyBitmaps(view)); // not itself, nor anything newer
            Assert.Equal([Blocks(10, 2), Blocks(100, 1)], await _catalog.DirtyRangesAsync(view, "first", default));
            Assert.Equal([], await _catalog.DirtyRangesAsync(view, "second", default));
            var newer = await Assert.ThrowsAsync<NbdProtocolException>(() => _catalog.DirtyRangesAsync(view, "-0s", default).AsTask());
            Assert.Contains("name the older point first", newer.Message);
        }
        finally
        {
            await view.ReleaseAsync();
        }
    }

    [Fact]
    public async Task Names_that_are_no_snapshot_or_point_and_expired_snapshots_are_refused_with_why()
    {
        Keep("old", await WriteAndFlushAsync(0), expired: DateTimeOffset.UtcNow);
        Assert.True(_catalog.TryGet("v", out var live));
        Assert.Empty(_catalog.DirtyBitmaps(live));
        Assert.Contains("has no snapshot named 'nope'",
            (await Assert.ThrowsAsync<NbdProtocolException>(() => _catalog.DirtyRangesAsync(live, "nope", default).AsTask())).Message);
        Assert.Contains("expired",
            (await Assert.ThrowsAsync<NbdProtocolException>(() => _catalog.DirtyRangesAsync(live, "old", default).AsTask())).Message);
        Assert.Contains("not restorable",
            (await Assert.ThrowsAsync<NbdProtocolException>(() => _catalog.DirtyRangesAsync(live, "gen:999999", default).AsTask())).Message);
    }

    /// <summary>
    /// The contract, not the mechanism: the flusher usually has the write in the log by the time of the
    /// diff anyway, so this passes without the catalog's flush too; it fails if either stops holding.
    /// </summary>
    [Fact]
    public async Task A_write_acknowledged_before_the_client_attaches_is_in_the_live_volume_bitmap()
    {
        var point = await WriteAndFlushAsync(0);
        await _volume.WriteAsync(5 * 4096, Enumerable.Repeat((byte)1, 4096).ToArray(), fua: false); // acknowledged, not flushed
        Assert.True(_catalog.TryGet("v", out var live));
        Assert.Equal([Blocks(5, 1)], await _catalog.DirtyRangesAsync(live, $"gen:{point.Generation}", default));
    }
}
