namespace ActorCache.Cache.Tests;

/// <summary>The read path the NBD front runs on its receive loop: only memory and the page cache, never a wait.</summary>
public sealed class ReadWithoutWaitingTests : IDisposable
{
    private const long Size = 8 << 20;
    private readonly CacheFixture _fixture = new();
    private readonly RingBuffer _ring = new(64L << 20);

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Reads_without_waiting_serve_ring_log_and_page_cached_backing_and_match_the_slow_path()
    {
        var data = CacheFixture.Pattern(256 << 10, 11);
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero), ring: _ring);
        var fast = new byte[data.Length];
        await cache.WriteAsync(0, data, fua: false);
        // In the ring or already in the log (the flusher is quick): either way no disk is needed.
        Assert.True(cache.TryReadWithoutWaiting(0, fast));
        Assert.Equal(data, fast);
        await cache.FlushAsync();
        Assert.True(cache.TryReadWithoutWaiting(0, fast), "just-written log data is in the page cache");
        Assert.Equal(data, fast);
        for (var i = 0; i < 1200 && cache.Index.CachedBlocks > 0; i++) await Task.Delay(25); // retention zero: destaged soon (up to 30 s: a busy machine)
        Assert.Equal(0, cache.Index.CachedBlocks);
        Array.Clear(fast);
        Assert.True(cache.TryReadWithoutWaiting(0, fast), "just-destaged backing data is in the page cache");
        Assert.Equal(data, fast);
        // A 512-byte-aligned read in the middle of blocks agrees with the slow path.
        var slow = new byte[6000];
        var quick = new byte[6000];
        await cache.ReadAsync(1536, slow);
        Assert.True(cache.TryReadWithoutWaiting(1536, quick));
        Assert.Equal(slow, quick);
    }
}
