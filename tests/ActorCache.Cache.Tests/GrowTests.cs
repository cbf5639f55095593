using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>A live cache grown with <see cref="GrowTarget"/> (a volume resized online): the index covers the new blocks, the backing has room for them.</summary>
public sealed class GrowTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task A_grown_cache_serves_the_new_blocks_keeps_the_old_ones_and_reopens_at_the_new_size()
    {
        var old = CacheFixture.Pattern(64 << 10, 1);
        var beyond = CacheFixture.Pattern(128 << 10, 2);
        const long grown = 3 * Size + 4096 * 5; // not a whole extent: the last extent is partial
        await using (var cache = _fixture.Open(Size))
        {
            await cache.WriteAsync(Size - old.Length, old, fua: false);
            Assert.True(await cache.TrySendAsync(new GrowTarget(grown)));
            Assert.Equal(grown, cache.Size);
            Assert.Equal(grown >> 12, cache.Index.Blocks);
            Assert.Equal(grown, new FileInfo(_fixture.BackingPath).Length);

            await CacheFixture.StagedWriteAsync(cache, Size, beyond, fua: false); // the first block past the old end
            await cache.WriteAsync(grown - 4096, beyond.AsMemory(0, 4096), fua: true); // the very last block
            var read = new byte[beyond.Length];
            await cache.ReadAsync(Size, read);
            Assert.Equal(beyond, read);
            var oldRead = new byte[old.Length];
            await cache.ReadAsync(Size - old.Length, oldRead);
            Assert.Equal(old, oldRead);
            await cache.FlushAsync();
        }
        // The log replays into an index of the new size: the writes past the old end come back.
        await using (var cache = _fixture.Open(grown))
        {
            var read = new byte[beyond.Length];
            await cache.ReadAsync(Size, read);
            Assert.Equal(beyond, read);
            var last = new byte[4096];
            await cache.ReadAsync(grown - 4096, last);
            Assert.Equal(beyond.AsSpan(0, 4096).ToArray(), last);
            var oldRead = new byte[old.Length];
            await cache.ReadAsync(Size - old.Length, oldRead);
            Assert.Equal(old, oldRead);
        }
    }

    [Fact]
    public async Task Destaging_reaches_the_grown_part_of_the_backing()
    {
        var data = CacheFixture.Pattern(256 << 10, 3);
        await using (var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero)))
        {
            Assert.True(await cache.TrySendAsync(new GrowTarget(2 * Size)));
            await cache.WriteAsync(Size + 8192, data, fua: true);
            for (var i = 0; i < 400 && cache.Index.CachedBlocks > 0; i++) await Task.Delay(25);
            Assert.Equal(0, cache.Index.CachedBlocks);
        }
        await using var raw = FileBacking.Open(_fixture.BackingPath, 2 * Size, create: false, readOnly: true, extend: false);
        var read = new byte[data.Length];
        await raw.ReadAsync(Size + 8192, read);
        Assert.Equal(data, read);
    }

    /// <summary>
    /// Writers keep creating index pages (each write lands in an extent nobody wrote before) while the
    /// index grows again and again: a page made in the old page array after the copy would be lost,
    /// and its blocks would read as the backing (zeroes) although the write was acknowledged.
    /// </summary>
    [Fact]
    public async Task Growing_while_writers_add_index_pages_loses_no_acknowledged_write()
    {
        // A large sparse volume, so copying the page array (8 bytes per extent) takes long enough to race with.
        const long size = 1L << 40;
        const int extents = 4000;
        await using var cache = _fixture.Open(size);
        var written = new List<(long Offset, byte[] Data)>[4];
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            written[w] = [];
            for (var i = w; i < extents; i += 4)
            {
                var extent = (long)i * 61; // spread out: every write is the first in its extent
                var data = CacheFixture.Pattern(4096, i);
                var offset = (extent << 22) + 4096L * (i % 7);
                await cache.WriteAsync(offset, data, fua: false);
                written[w].Add((offset, data));
            }
        })).ToList();
        var grown = size;
        while (writers.Any(w => !w.IsCompleted))
        {
            grown += 4 << 20;
            Assert.True(await cache.TrySendAsync(new GrowTarget(grown)));
        }
        await Task.WhenAll(writers);
        var lost = 0;
        foreach (var (offset, data) in written.SelectMany(w => w))
        {
            var read = new byte[4096];
            await cache.ReadAsync(offset, read);
            if (!data.AsSpan().SequenceEqual(read)) lost++;
        }
        Assert.True(lost == 0, $"{lost} of {extents} acknowledged writes read back as something else after {(grown - size) >> 22} grows");
    }

    [Fact]
    public async Task A_backing_that_cannot_grow_leaves_the_cache_as_it_was()
    {
        await using (FileBacking.Open(_fixture.BackingPath, Size, create: true)) { }
        await using var cache = _fixture.Open(Size, backing: FileBacking.Open(_fixture.BackingPath, Size, create: false, readOnly: true));
        var refused = await Assert.ThrowsAsync<BlockTargetException>(async () => await cache.TrySendAsync(new GrowTarget(2 * Size)));
        Assert.Contains("read-only", refused.Message);
        Assert.Equal(Size, cache.Size);
        Assert.Equal(Size >> 12, cache.Index.Blocks);
        Assert.Equal(Size, new FileInfo(_fixture.BackingPath).Length);
    }
}
