using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// Leaving write-back while writes keep coming: no write may slip into the cache after it was drained,
/// or it would hide the write-through writes that follow and later be destaged over them.
/// </summary>
public sealed class ModeSwitchTests : IDisposable
{
    private const long Size = 1 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Switching_to_write_through_under_load_leaves_nothing_in_the_cache_to_hide_later_writes()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.FromHours(1)));
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            var random = new Random(1);
            var block = new byte[4096];
            while (!stop.IsCancellationRequested)
            {
                random.NextBytes(block);
                var at = random.Next(0, 256) * 4096L;
                if (random.Next(2) == 0) await cache.WriteAsync(at, block, fua: false);
                else await CacheFixture.StagedWriteAsync(cache, at, block, fua: false);
            }
        });
        await Task.Delay(200);
        await cache.SetModeAsync(CacheMode.WriteThrough); // drains while the writer goes on
        stop.Cancel();
        await writer;
        Assert.Equal(0, cache.Index.CachedBlocks);

        var newer = new byte[4096];
        Array.Fill(newer, (byte)0x55);
        for (var b = 0; b < 256; b++) await cache.WriteAsync(b * 4096L, newer, fua: false);
        var read = new byte[4096];
        for (var b = 0; b < 256; b++)
        {
            await cache.ReadAsync(b * 4096L, read);
            Assert.True(read.AsSpan().IndexOfAnyExcept((byte)0x55) < 0, $"block {b} still reads an older write from the cache");
        }
        await cache.SetModeAsync(CacheMode.WriteBack);
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 9), fua: true);
        await cache.ReadAsync(0, read);
        Assert.Equal(CacheFixture.Pattern(4096, 9), read);
    }

    [Fact]
    public async Task History_is_write_backs_only_points_from_before_a_write_through_period_are_gone_after_it()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.FromHours(1)));
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 1), fua: false);
        await cache.FlushAsync();
        var before = cache.History.Latest!.Value;

        // A kept snapshot holds the volume in write-back.
        Assert.True(await cache.ProtectAsync(before.Sequence));
        await Assert.ThrowsAsync<InvalidOperationException>(() => cache.SetModeAsync(CacheMode.WriteThrough));
        cache.Unprotect(before.Sequence);

        await cache.SetModeAsync(CacheMode.WriteThrough);
        var read = new ReadHistory();
        Assert.True(await cache.TrySendAsync(read));
        Assert.Empty(read.Result!);
        await Assert.ThrowsAsync<BlockTargetException>(async () => await cache.TrySendAsync(new KeepPoint(PointQuery.Known(before))));
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 2), fua: false); // straight to the backing

        await cache.SetModeAsync(CacheMode.WriteBack);
        // The old point would read today's backing as the past: it is not restorable any more.
        await Assert.ThrowsAsync<BlockTargetException>(async () => await cache.TrySendAsync(new OpenPastView(PointQuery.AtGeneration(before.Generation))));
        await cache.WriteAsync(4096, CacheFixture.Pattern(4096, 3), fua: false);
        await cache.FlushAsync();
        var after = new ReadHistory();
        await cache.TrySendAsync(after);
        Assert.All(after.Result!, p => Assert.True(p.Generation > before.Generation));
        Assert.NotEmpty(after.Result!);
    }
}
