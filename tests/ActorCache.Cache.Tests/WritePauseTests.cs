namespace ActorCache.Cache.Tests;

/// <summary>The barrier of a snapshot across volumes: paused, new writes wait (none is lost or reordered); a FLUSH meanwhile closes a point without them.</summary>
public sealed class WritePauseTests : IDisposable
{
    private const long Size = 2 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Paused_writes_wait_and_land_after_resume_and_the_point_taken_meanwhile_holds_none_of_them()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options());
        var before = CacheFixture.Pattern(8192, 1);
        await cache.WriteAsync(0, before, fua: false);
        Assert.True(await cache.TrySendAsync(new PauseWrites()));
        var plain = cache.WriteAsync(0, CacheFixture.Pattern(8192, 2), fua: false).AsTask();
        var staged = CacheFixture.StagedWriteAsync(cache, 8192, CacheFixture.Pattern(4096, 3), fua: true);
        var zero = cache.WriteZeroesAsync(16384, 4096, mayDeallocate: false, fastOnly: false, fua: false).AsTask();
        await Task.Delay(300);
        Assert.False(plain.IsCompleted || staged.IsCompleted || zero.IsCompleted, "a write was accepted while writes were paused");

        await cache.FlushAsync(); // the barrier's FLUSH: only what came before
        var keep = new KeepPoint(PointQuery.Newest);
        Assert.True(await cache.TrySendAsync(keep));
        Assert.True(await cache.TrySendAsync(new ResumeWrites()));
        await Task.WhenAll(plain, staged, zero).WaitAsync(TimeSpan.FromSeconds(10));

        await using var view = await cache.OpenViewAsync(keep.Result!.Value);
        var then = new byte[20480];
        await view.ReadAsync(0, then);
        Assert.Equal(before, then.AsSpan(0, 8192).ToArray());
        Assert.True(then.AsSpan(8192).IndexOfAnyExcept((byte)0) < 0);
        var now = new byte[8192];
        await cache.ReadAsync(0, now);
        Assert.Equal(CacheFixture.Pattern(8192, 2), now);
    }
}
