using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

public sealed class WriteBackCacheTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static async Task<byte[]> ReadAll(IBlockTarget target)
    {
        var data = new byte[target.Size];
        await target.ReadAsync(0, data);
        return data;
    }

    [Fact]
    public async Task Acknowledged_write_is_visible_before_and_after_the_flusher_and_survives_reopen()
    {
        var data = Pattern(64 << 10, 1);
        await using (var cache = _fixture.Open(Size))
        {
            await cache.WriteAsync(8192, data, fua: false);
            var read = new byte[data.Length];
            await cache.ReadAsync(8192, read);
            Assert.Equal(data, read);
            await cache.FlushAsync();
            await cache.ReadAsync(8192, read);
            Assert.Equal(data, read);
            Assert.True(cache.Statistics.Syncs >= 1);
        }
        // Nothing was destaged (retention is an hour): the data comes back from the log.
        var backing = new byte[data.Length];
        await using (var raw = FileBacking.Open(_fixture.BackingPath, Size, create: false)) await raw.ReadAsync(8192, backing);
        Assert.All(backing, b => Assert.Equal(0, b));
        await using (var cache = _fixture.Open(Size))
        {
            Assert.True(cache.Recovery.BatchesReplayed >= 1);
            var read = new byte[data.Length];
            await cache.ReadAsync(8192, read);
            Assert.Equal(data, read);
        }
    }

    [Fact]
    public async Task Sub_block_writes_merge_with_what_is_there()
    {
        await using var cache = _fixture.Open(Size);
        var block = Pattern(4096, 2);
        await cache.WriteAsync(4096, block, fua: false);
        await cache.FlushAsync();
        var small = Pattern(512, 3);
        await cache.WriteAsync(4096 + 1536, small, fua: true);
        small.CopyTo(block, 1536);
        var read = new byte[4096];
        await cache.ReadAsync(4096, read);
        Assert.Equal(block, read);
        var part = new byte[1024];
        await cache.ReadAsync(4096 + 1024, part);
        Assert.Equal(block.AsSpan(1024, 1024).ToArray(), part);
    }

    [Fact]
    public async Task Destaging_moves_history_to_the_backing_and_frees_the_log()
    {
        var data = Pattern(1 << 20, 4);
        await using (var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero)))
        {
            await cache.WriteAsync(0, data, fua: false);
            await cache.TrimAsync(1 << 20, 1 << 20, fua: false);
            await cache.FlushAsync();
            for (var i = 0; i < 1200 && cache.Index.CachedBlocks > 0; i++) await Task.Delay(25); // up to 30 s: a busy machine
            Assert.Equal(0, cache.Index.CachedBlocks);
            Assert.True(cache.Statistics.BlocksDestaged >= 256);
            Assert.Equal(data, (await ReadAll(cache))[..data.Length]);
        }
        var backing = new byte[data.Length];
        await using (var raw = FileBacking.Open(_fixture.BackingPath, Size, create: false)) await raw.ReadAsync(0, backing);
        Assert.Equal(data, backing);
        Assert.True(Checkpoint.Load(_fixture.LogDirectory)!.Horizon > 0);
    }

    [Fact]
    public async Task Switching_to_write_through_drains_everything_first()
    {
        var data = Pattern(256 << 10, 5);
        await using var cache = _fixture.Open(Size);
        await cache.WriteAsync(0, data, fua: false);
        await cache.SetModeAsync(CacheMode.WriteThrough);
        Assert.Equal(CacheMode.WriteThrough, cache.Mode);
        Assert.Equal(0, cache.Index.CachedBlocks);
        await using (var raw = FileBacking.Open(_fixture.BackingPath, Size, create: false, readOnly: true))
        {
            var backing = new byte[data.Length];
            await raw.ReadAsync(0, backing);
            Assert.Equal(data, backing);
        }
        var more = Pattern(4096, 6);
        await cache.WriteAsync(1 << 20, more, fua: false); // straight to the backing
        Assert.Equal(0, cache.Index.CachedBlocks);
        var read = new byte[4096];
        await cache.ReadAsync(1 << 20, read);
        Assert.Equal(more, read);
    }

    [Fact]
    public async Task Flushes_from_many_writers_share_fdatasyncs()
    {
        await using var cache = _fixture.Open(Size);
        var tasks = Enumerable.Range(0, 64).Select(async i =>
        {
            await cache.WriteAsync(i * 4096L, Pattern(4096, i), fua: false);
            await cache.FlushAsync();
        });
        await Task.WhenAll(tasks);
        Assert.True(cache.Statistics.Syncs < 64, $"{cache.Statistics.Syncs} syncs for 64 flushes: no group commit");
        for (var i = 0; i < 64; i++)
        {
            var read = new byte[4096];
            await cache.ReadAsync(i * 4096L, read);
            Assert.Equal(Pattern(4096, i), read);
        }
    }

    [Fact]
    public async Task Writes_larger_than_a_batch_span_several_batches()
    {
        var data = Pattern(2 << 20, 7); // 512 blocks, batches hold 64
        await using (var cache = _fixture.Open(Size))
        {
            await cache.WriteAsync(4096, data, fua: true);
            Assert.True(cache.Statistics.BatchesWritten >= 8);
        }
        await using (var cache = _fixture.Open(Size))
        {
            var read = new byte[data.Length];
            await cache.ReadAsync(4096, read);
            Assert.Equal(data, read);
        }
    }
}

public sealed class CacheAllocationTests : IDisposable
{
    private const long Size = 64 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Allocation_reports_cached_blocks_as_data_and_uncached_ones_as_the_backing_says()
    {
        await using var cache = _fixture.Open(Size);
        await cache.WriteAsync(4096, new byte[8192], fua: false);
        await cache.WriteAsync(1 << 20, new byte[4096], fua: false);
        await cache.TrimAsync(2 << 20, 8192, fua: false);
        var extents = new AllocationExtent[256];
        var n = await cache.GetAllocationAsync(0, Size, extents);
        Assert.Equal(
        [
            new AllocationExtent(4096, AllocationState.Hole | AllocationState.Zero), new AllocationExtent(8192, AllocationState.Data),
            new AllocationExtent((1 << 20) - 12288, AllocationState.Hole | AllocationState.Zero), new AllocationExtent(4096, AllocationState.Data),
            new AllocationExtent((1 << 20) - 4096, AllocationState.Hole | AllocationState.Zero), new AllocationExtent(8192, AllocationState.Zero),
            new AllocationExtent(Size - (2 << 20) - 8192, AllocationState.Hole | AllocationState.Zero),
        ], extents[..n]);

        var one = new AllocationExtent[1];
        Assert.Equal(1, await cache.GetAllocationAsync(4096, Size - 4096, one));
        Assert.Equal(new AllocationExtent(8192, AllocationState.Data), one[0]);
        Assert.Equal(1, await cache.GetAllocationAsync(Size - 4096, 4096, one));
        Assert.Equal(4096, one[0].Length);
        for (var offset = 0L; offset < Size; offset += 1 << 20)
        {
            var count = await cache.GetAllocationAsync(offset, Size - offset, extents);
            Assert.True(count >= 1);
            Assert.All(extents[..count], e => Assert.True(e.Length > 0));
            Assert.True(extents[..count].Sum(e => e.Length) <= Size - offset);
        }
    }
}
