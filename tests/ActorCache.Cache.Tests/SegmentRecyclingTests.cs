namespace ActorCache.Cache.Tests;

/// <summary>
/// Released log segments are kept as spares and renamed into place as later segments (their blocks
/// are written already, so an fdatasync into them commits no file-system journal). The stale records
/// they still hold must never be replayed: a log that has recycled its segments recovers exactly the
/// acknowledged data, reports neither corruption nor a torn tail, and keeps working.
/// </summary>
public sealed class SegmentRecyclingTests : IDisposable
{
    private const long Size = 16 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task A_log_that_recycled_its_segments_recovers_the_newest_data_and_nothing_stale()
    {
        var options = _fixture.Options(retention: TimeSpan.Zero); // 1 MiB segments, destaged as soon as durable
        var medium = new SegmentFiles(options.LogDirectory, options.SegmentSize);
        var model = new byte[Size];
        var random = new Random(7);
        var reusedSegments = 0;
        await using (var cache = _fixture.Open(Size, options, medium: medium))
        {
            // Several rounds over the same blocks, each round far larger than a segment: the log
            // releases segments behind the horizon and reuses them for the rounds after.
            for (var round = 0; round < 6; round++)
            {
                for (var i = 0; i < 96; i++)
                {
                    var offset = random.Next(0, 64) * 32768L;
                    var data = CacheFixture.Pattern(32768, round * 1000 + i);
                    await CacheFixture.StagedWriteAsync(cache, offset, data, fua: false);
                    data.CopyTo(model, offset);
                }
                await cache.FlushAsync();
                for (var i = 0; i < 200 && cache.Index.CachedBlocks > 0; i++) await Task.Delay(25);
                if (medium.SpareCount > 0) reusedSegments++;
            }
            Assert.True(reusedSegments > 0, "released segments were kept for reuse");
            Assert.Contains(Directory.EnumerateFiles(options.LogDirectory), f => Path.GetFileName(f).StartsWith("spare-"));

            // The last writes are closed without waiting for the destager: reopening replays whatever
            // is still in the log, out of recycled files that also hold older records.
            var last = CacheFixture.Pattern(256 << 10, 99);
            await CacheFixture.StagedWriteAsync(cache, 1 << 20, last, fua: true);
            last.CopyTo(model, 1 << 20);
        }

        await using var recovered = _fixture.Open(Size, options);
        Assert.Null(recovered.Recovery.Corruption);
        Assert.Null(recovered.Recovery.TornTail);
        var content = new byte[Size];
        await recovered.ReadAsync(0, content);
        Assert.True(model.AsSpan().SequenceEqual(content), "the recovered volume differs from what was acknowledged");

        // And the recovered log takes new writes into its recycled segments.
        var more = CacheFixture.Pattern(64 << 10, 100);
        await recovered.WriteAsync(2 << 20, more, fua: true);
        var read = new byte[more.Length];
        await recovered.ReadAsync(2 << 20, read);
        Assert.Equal(more, read);
    }
}
