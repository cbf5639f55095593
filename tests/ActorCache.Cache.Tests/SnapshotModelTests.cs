namespace ActorCache.Cache.Tests;

/// <summary>
/// Views of the past against the simplest model: a copy of the whole volume taken at every sync point.
/// Random writes, trims, zeroes and flushes with destaging racing all the time (retention zero, small
/// segments, so the log wraps many times), points kept (copy-on-write past the horizon) and released,
/// reopens; after every step each kept point and a few recent ones read exactly their copy.
/// </summary>
public sealed class SnapshotModelTests : IDisposable
{
    private const long Size = 2 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Kept_and_recent_points_read_exactly_what_the_volume_held_then(int seed)
    {
        var random = new Random(seed);
        var model = new byte[Size];
        var options = _fixture.Options(retention: TimeSpan.Zero, segmentSize: 256 << 10);
        var copies = new Dictionary<long, (SyncPoint Point, byte[] Content)>(); // by generation
        var kept = new Dictionary<long, SyncPoint>();
        var cache = _fixture.Open(Size, options);
        try
        {
            for (var step = 0; step < 400; step++)
            {
                var length = random.Next(1, 48) * 512;
                var offset = random.NextInt64(0, (Size - length) / 512 + 1) * 512;
                switch (random.Next(100))
                {
                    case < 55:
                        var data = new byte[length];
                        random.NextBytes(data);
                        await cache.WriteAsync(offset, data, fua: false);
                        data.CopyTo(model, offset);
                        break;
                    case < 62:
                        await cache.TrimAsync(offset, length, fua: false);
                        Array.Clear(model, (int)offset, length);
                        break;
                    case < 68:
                        await cache.WriteZeroesAsync(offset, length, mayDeallocate: false, fastOnly: false, fua: false);
                        Array.Clear(model, (int)offset, length);
                        break;
                    case < 85:
                    {
                        await cache.FlushAsync();
                        if (cache.History.Latest is not { } point || copies.ContainsKey(point.Generation)) break;
                        copies[point.Generation] = (point, (byte[])model.Clone());
                        // Keep some: from now on they survive the destager passing them.
                        if (random.Next(3) == 0 && await cache.ProtectAsync(point.Sequence)) kept[point.Generation] = point;
                        break;
                    }
                    case < 88 when kept.Count > 0:
                    {
                        var release = kept.Keys.ElementAt(random.Next(kept.Count));
                        cache.Unprotect(kept[release].Sequence);
                        kept.Remove(release);
                        break;
                    }
                    case < 97:
                        await CheckAsync(cache, copies, kept, random, step);
                        break;
                    default:
                        await cache.DisposeAsync();
                        cache = _fixture.Open(Size, options, kept: kept.Values.Select(p => p.Sequence));
                        break;
                }
            }
            await CheckAsync(cache, copies, kept, random, 400);
            Assert.True(cache.Statistics.PreservedBlocks > 0, "nothing was ever preserved: the test did not exercise copy-on-write");
        }
        finally
        {
            await cache.DisposeAsync();
        }
    }

    /// <summary>Every kept point, and the recent points the log still covers, read their copy exactly; an open view stays right while the volume moves on.</summary>
    private static async Task CheckAsync(WriteBackCache cache, Dictionary<long, (SyncPoint Point, byte[] Content)> copies,
        Dictionary<long, SyncPoint> kept, Random random, int step)
    {
        var restorable = cache.History.ToList().Where(p => copies.ContainsKey(p.Generation)).TakeLast(2).Select(p => p.Generation);
        foreach (var generation in kept.Keys.Concat(restorable).Distinct())
        {
            var (point, content) = copies[generation];
            GenerationView view;
            try
            {
                view = await cache.OpenViewAsync(point);
            }
            catch (ActorCache.Blocks.BlockTargetException) when (!kept.ContainsKey(generation))
            {
                continue; // a recent point the destager passed meanwhile: only kept ones are promised
            }
            await using var _ = view;
            var read = new byte[Size];
            await view.ReadAsync(0, read);
            Assert.True(content.AsSpan().SequenceEqual(read), $"step {step}: generation {generation}{(kept.ContainsKey(generation) ? " (kept)" : "")} reads differently; first difference at byte {FirstDifference(content, read)}");
            // Random smaller reads, and the inline path, agree.
            for (var i = 0; i < 8; i++)
            {
                var length = random.Next(1, 20) * 512;
                var offset = random.NextInt64(0, (Size - length) / 512 + 1) * 512;
                var part = new byte[length];
                await view.ReadAsync(offset, part);
                Assert.True(content.AsSpan((int)offset, length).SequenceEqual(part), $"step {step}: generation {generation} at {offset}+{length}");
                if (view.TryReadWithoutWaiting(offset, part))
                    Assert.True(content.AsSpan((int)offset, length).SequenceEqual(part), $"step {step}: generation {generation} inline at {offset}+{length}");
            }
        }
    }

    private static int FirstDifference(byte[] a, byte[] b)
    {
        for (var i = 0; i < a.Length; i++)
            if (a[i] != b[i]) return i;
        return -1;
    }
}
