namespace ActorCache.Cache.Tests;

/// <summary>
/// Past the retention cap, history is destaged at a steady pace (one step per destage interval) while
/// the log stays below its high watermark (halfway from the cap to capacity), and flat out above it,
/// so a log that just passed its cap does not flood the disk with backing writeback.
/// </summary>
public sealed class WritebackThrottleTests : IDisposable
{
    private const long Size = 32 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Retention_shrinks_one_step_per_interval_below_the_high_watermark_and_flat_out_above_it()
    {
        // Capacity 8 MiB: the retention cap is 2 MiB, the high watermark 5 MiB. A long interval, so only
        // the throttle's own decisions (not a periodic tick) can run a step while this test watches.
        var options = _fixture.Options(capacity: 8 << 20) with { RetentionMaxFraction = 0.25, DestageInterval = TimeSpan.FromSeconds(30) };
        await using var cache = _fixture.Open(Size, options);
        const long nearCap = (2 << 20) + (512 << 10);
        long offset = 0;
        async Task WriteAsync(int mebibytes)
        {
            for (var i = 0; i < mebibytes * 4; i++, offset += 256 << 10)
                await CacheFixture.StagedWriteAsync(cache, offset, CacheFixture.Pattern(256 << 10, (int)(offset >> 18)), fua: false);
            await cache.FlushAsync();
        }
        // Deadlines, not fixed sleeps: on a loaded machine (other test classes run alongside) a step may take a while.
        async Task<bool> LogShrinksToCapAsync()
        {
            for (var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10); DateTime.UtcNow < deadline; await Task.Delay(20))
                if (cache.Statistics.LogBytes <= nearCap) return true;
            return false;
        }

        // Past the cap: the first step runs at once. It brings the log back to the cap unless the durable tail cut it short
        // (a commit in the middle of the writes, under load: the flake this test had); the rest then waits for the interval,
        // as any step past the cap below the watermark.
        await WriteAsync(3);
        var ran = false;
        for (var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10); !ran && DateTime.UtcNow < deadline; await Task.Delay(20))
            ran = cache.Statistics.RetentionShrinks > 0 && cache.Statistics.BlocksDestaged > 0;
        Assert.True(ran, "the first step past the cap did not run");

        await WriteAsync(1); // past the cap again, below the watermark, within the interval: waits its turn
        await Task.Delay(700); // unthrottled, the step would run at once on the FLUSH's wake-up
        Assert.True(cache.Statistics.LogBytes > nearCap, "a second step ran within the interval");

        await WriteAsync(3); // past the high watermark: destaged without waiting for the interval
        Assert.True(await LogShrinksToCapAsync(), "past the high watermark the log was not destaged at once");

        var read = new byte[256 << 10];
        await cache.ReadAsync(0, read);
        Assert.Equal(CacheFixture.Pattern(256 << 10, 0), read);
    }
}
