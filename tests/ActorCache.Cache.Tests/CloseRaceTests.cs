using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// A volume that closes refuses new writes first: every write it acknowledged reaches the log, and every ring slot comes back
/// to the node-wide ring (a write accepted after the close's last FLUSH was acknowledged, never logged, its slots never freed).
/// </summary>
public sealed class CloseRaceTests : IDisposable
{
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>Writes racing with a close: every slot they claimed comes back to the (node-wide) ring once the volume is closed.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Writes_racing_with_close_leave_no_ring_slot_behind(int seed)
    {
        var ring = new RingBuffer(64L << 20);
        var cache = _fixture.Open(8 << 20, _fixture.Options(), ring: ring);
        var stop = false;
        long acked = 0;
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var random = new Random(seed * 10 + w);
            var block = new byte[4096];
            while (!Volatile.Read(ref stop))
            {
                try
                {
                    await cache.WriteAsync(random.Next(0, 2048) * 4096L, block, fua: false);
                    Interlocked.Increment(ref acked);
                }
                catch (BlockTargetException)
                {
                }
            }
        })).ToList();
        await Task.Delay(100);
        var report = await cache.CloseAsync();
        await Task.Delay(200);
        Volatile.Write(ref stop, true);
        await Task.WhenAll(writers);
        Assert.True(ring.SlotCount == ring.FreeSlots, $"{ring.SlotCount - ring.FreeSlots} slots never came back; close report: {report}; acked {acked}");
    }
}
