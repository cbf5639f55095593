namespace ActorCache.Cache.Tests;

/// <summary>
/// What a replicated primary's back-pressure adds to what its links hold (<see cref="WriteBackCache.UnloggedBytes"/>):
/// every write accepted and not yet in the log, a batch being written included, and nothing once it is logged.
/// </summary>
public sealed class UnloggedBytesTests : IDisposable
{
    private const long Size = 8 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Writes_count_until_their_batch_is_in_the_log()
    {
        var options = _fixture.Options();
        var medium = GatedMedium.Over(options);
        await using var cache = _fixture.Open(Size, options, medium: medium);
        Assert.Equal(0, cache.UnloggedBytes);

        medium.Gated = true;
        await cache.WriteAsync(0, CacheFixture.Pattern(64 << 10, 1), fua: false);
        await cache.WriteAsync(1 << 20, CacheFixture.Pattern(1 << 20, 2), fua: false); // a batch's worth: the flusher starts writing
        Assert.True(await medium.Entered.WaitAsync(TimeSpan.FromSeconds(10)), "the flusher never wrote a batch");
        Assert.Equal((64 << 10) + (1 << 20), cache.UnloggedBytes); // the batch being written is not in the log yet

        await medium.FlushThenOpenAsync(cache);
        Assert.Equal(0, cache.UnloggedBytes);
    }
}
