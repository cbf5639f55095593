using ActorCache.Blocks;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Cache.Tests;

/// <summary>
/// The append queue is the one writer of the index (DESIGN §3): a region has an index table while
/// anything in it is cached and loses it once clean and idle, and the index built from concurrent
/// writers is the one recovery rebuilds from the log, block for block.
/// </summary>
public sealed class IndexOwnershipTests : IDisposable
{
    private const long Size = 1L << 30; // four index regions of 256 MiB
    private const long Region = 1L << 28;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task A_region_has_an_index_table_while_cached_and_loses_it_when_clean_and_idle()
    {
        var options = _fixture.Options(retention: TimeSpan.Zero) with { ExtentIdleTimeout = TimeSpan.FromMilliseconds(300) };
        await using var cache = _fixture.Open(Size, options);
        var emptyIndex = cache.Index.FootprintBytes;
        var first = CacheFixture.Pattern(8192, 1);
        await CacheFixture.StagedWriteAsync(cache, 0, first, fua: false); // region 0
        await cache.WriteAsync(2 * Region + 512, first.AsMemory(0, 1024), fua: false); // a partial write in region 2
        var twoPages = cache.Index.FootprintBytes;
        Assert.True(twoPages > emptyIndex);
        Assert.Equal(3, cache.Index.CachedBlocks);
        Assert.Equal(2 * Region, cache.Index.NextCached(2, Size >> 12) << 12);

        await cache.FlushAsync(); // retention zero: destaged soon after, then idle
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((cache.Index.FootprintBytes > emptyIndex || cache.Index.CachedBlocks > 0) && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Equal(0, cache.Index.CachedBlocks);
        Assert.Equal(emptyIndex, cache.Index.FootprintBytes);

        // The data is on the backing, and a new write gets a new page.
        var read = new byte[8192];
        await cache.ReadAsync(0, read);
        Assert.Equal(first, read);
        var second = CacheFixture.Pattern(4096, 2);
        await CacheFixture.StagedWriteAsync(cache, 4096, second, fua: false);
        Assert.Equal(emptyIndex + (twoPages - emptyIndex) / 2, cache.Index.FootprintBytes);
        await cache.ReadAsync(0, read);
        Assert.Equal(first.AsSpan(0, 4096).ToArray(), read.AsSpan(0, 4096).ToArray());
        Assert.Equal(second, read.AsSpan(4096).ToArray());
    }

    [Fact]
    public async Task Concurrent_overlapping_writers_leave_the_index_that_recovery_rebuilds_from_the_log()
    {
        // Four writers hammer the same 64 blocks across an index region boundary with whole, multi-block and
        // partial writes. Whatever order they land in, the runtime index must be the log's order: the
        // content read now equals the content after a reopen replays the log, and every logged entry
        // is the same entry recovery finds.
        var options = _fixture.Options() with { MaxBatchBlocks = 16 };
        var hot = Region - 32 * 4096; // 32 blocks either side of the index region 0/1 boundary
        var before = new byte[64 * 4096];
        Dictionary<long, ulong> runtime;
        await using (var cache = _fixture.Open(Size, options))
        {
            var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
            {
                var random = new Random(w);
                for (var i = 0; i < 400; i++)
                {
                    var block = random.Next(0, 60);
                    switch (random.Next(3))
                    {
                        case 0:
                            await CacheFixture.StagedWriteAsync(cache, hot + block * 4096L, CacheFixture.Pattern(4096 * random.Next(1, 5), w * 1000 + i), fua: false);
                            break;
                        case 1:
                            var sectors = random.Next(1, 12);
                            await cache.WriteAsync(hot + block * 4096L + random.Next(0, 8) * 512, CacheFixture.Pattern(sectors * 512, w * 1000 + i), fua: false);
                            break;
                        default:
                            await cache.WriteZeroesAsync(hot + block * 4096L, 4096 * random.Next(1, 3), mayDeallocate: random.Next(2) == 0, fastOnly: false, fua: false);
                            break;
                    }
                    if (random.Next(50) == 0) await cache.FlushAsync();
                }
            })).ToArray();
            await Task.WhenAll(writers);
            await cache.FlushAsync();
            await cache.ReadAsync(hot, before);
            runtime = cache.Index.Entries().ToDictionary(e => e.Block, e => e.Entry);
        }
        await using (var reopened = _fixture.Open(Size, options))
        {
            var after = new byte[before.Length];
            await reopened.ReadAsync(hot, after);
            Assert.True(before.AsSpan().SequenceEqual(after), "the content after replaying the log differs from what the runtime index served");
            foreach (var (block, entry) in runtime)
                if (BlockIndex.IsLogged(entry))
                    Assert.Equal(entry, reopened.Index.Get(block));
        }
    }

    [Fact]
    public async Task Writes_fail_with_a_clear_error_instead_of_hanging_once_the_actor_system_is_gone()
    {
        var actors = ActorSystem.Create("extent-stop", CacheDispatchers.Hocon);
        var cache = WriteBackCache.Open("stopping", FileBacking.Open(_fixture.BackingPath, Size, create: true), CacheFixture.SharedRing,
            _fixture.Options(), CacheMode.WriteBack, NullLogger.Instance, actors);
        await CacheFixture.StagedWriteAsync(cache, 0, CacheFixture.Pattern(4096, 3), fua: false);
        await actors.Terminate();

        var write = cache.WriteAsync(4096, CacheFixture.Pattern(4096, 4), fua: false).AsTask();
        Assert.Same(write, await Task.WhenAny(write, Task.Delay(TimeSpan.FromSeconds(30))));
        var error = await Assert.ThrowsAsync<BlockTargetException>(() => write);
        Assert.Equal(BlockError.ShuttingDown, error.Error);
        Assert.Contains("closed", error.Message);
        await cache.DisposeAsync();
    }
}
