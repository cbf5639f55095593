using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// The cache against the simplest possible model, a byte array of the whole volume, under random
/// operation sequences: writes of any 512-byte-aligned size, trims, zeroes, flushes, reads, reopens
/// (recovery from the log) and, in one variant, constant destaging.
/// </summary>
public sealed class ModelTests : IDisposable
{
    private const long Size = 2 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    [InlineData(4, true)]
    public async Task Random_operations_match_a_byte_array(int seed, bool destageConstantly)
    {
        var random = new Random(seed);
        var model = new byte[Size];
        var options = _fixture.Options(retention: destageConstantly ? TimeSpan.Zero : TimeSpan.FromHours(1), segmentSize: 256 << 10);
        var cache = _fixture.Open(Size, options);
        try
        {
            for (var step = 0; step < 1500; step++)
            {
                var sectors = random.Next(1, 64);
                var length = sectors * 512;
                var offset = random.NextInt64(0, (Size - length) / 512 + 1) * 512;
                switch (random.Next(100))
                {
                    case < 55:
                    {
                        // Half the writes are whole blocks received straight into ring slots, as the NBD front does.
                        var staged = random.Next(2) == 0;
                        if (staged)
                        {
                            offset &= ~4095L;
                            length = (length + 4095) & ~4095;
                        }
                        var data = new byte[length];
                        random.NextBytes(data);
                        if (staged) await CacheFixture.StagedWriteAsync(cache, offset, data, fua: random.Next(10) == 0);
                        else await cache.WriteAsync(offset, data, fua: random.Next(10) == 0);
                        data.CopyTo(model, offset);
                        break;
                    }
                    case < 62:
                        await cache.TrimAsync(offset, length, fua: false);
                        Array.Clear(model, (int)offset, length);
                        break;
                    case < 69:
                        await cache.WriteZeroesAsync(offset, length, mayDeallocate: random.Next(2) == 0, fastOnly: false, fua: false);
                        Array.Clear(model, (int)offset, length);
                        break;
                    case < 75:
                        await cache.FlushAsync();
                        break;
                    case < 98:
                    {
                        var read = new byte[length];
                        await cache.ReadAsync(offset, read);
                        Assert.True(model.AsSpan((int)offset, length).SequenceEqual(read), $"step {step}: read at {offset}+{length} differs");
                        break;
                    }
                    default:
                    {
                        // A clean reopen: everything acknowledged and flushed by dispose comes back from the log,
                        // and so does every sync point: the same generation numbers at the same times.
                        await cache.FlushAsync();
                        var history = cache.History.ToList();
                        var generation = cache.Generation;
                        await cache.DisposeAsync();
                        cache = _fixture.Open(Size, options);
                        Assert.Equal(generation, cache.Generation);
                        var recovered = cache.History.ToList();
                        // The destager may have moved the horizon past some of them meanwhile: those are gone from both.
                        Assert.Equal(history.Skip(history.Count - recovered.Count), recovered);
                        break;
                    }
                }
            }
            var all = new byte[Size];
            await cache.ReadAsync(0, all);
            Assert.True(model.AsSpan().SequenceEqual(all), "final content differs");
        }
        finally
        {
            await cache.DisposeAsync();
        }
        await using var reopened = _fixture.Open(Size, options);
        var final = new byte[Size];
        await reopened.ReadAsync(0, final);
        Assert.True(model.AsSpan().SequenceEqual(final), "content after the last reopen differs");
    }

    [Fact]
    public async Task Concurrent_writers_and_readers_never_see_a_mixed_block()
    {
        // Each block is always written whole with one repeated byte, so any torn read shows two values.
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero, segmentSize: 256 << 10));
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        var writers = Enumerable.Range(0, 3).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            var block = new byte[4096];
            while (!stop.IsCancellationRequested)
            {
                Array.Fill(block, (byte)random.Next(1, 256));
                await cache.WriteAsync(random.Next(0, (int)(Size / 4096)) * 4096L, block, fua: random.Next(50) == 0);
            }
        }));
        var readers = Enumerable.Range(0, 2).Select(r => Task.Run(async () =>
        {
            var random = new Random(100 + r);
            var block = new byte[4096];
            while (!stop.IsCancellationRequested)
            {
                await cache.ReadAsync(random.Next(0, (int)(Size / 4096)) * 4096L, block);
                Assert.True(block.AsSpan().IndexOfAnyExcept(block[0]) < 0, "a block mixed two writes");
            }
        }));
        await Task.WhenAll(writers.Concat(readers));
    }
}
