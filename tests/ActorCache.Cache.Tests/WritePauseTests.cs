using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>Backing whose writes wait at a gate the test opens (the destager's writes during a drain).</summary>
internal sealed class GatedBacking(IBlockTarget below) : ForwardingTarget(below)
{
    public readonly SemaphoreSlim Entered = new(0), Open = new(0);
    public volatile bool Gated;

    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        if (Gated)
        {
            Entered.Release();
            await Open.WaitAsync(cancellationToken);
        }
        await Below.WriteAsync(offset, data, fua, cancellationToken);
    }
}

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

    /// <summary>
    /// A snapshot barrier and a switch to write-through each hold their own pause: the barrier ending during the switch's second
    /// drain does not let writes into the cache being left (they stayed cached in a write-through volume, hiding the
    /// write-through writes that followed).
    /// </summary>
    [Fact]
    public async Task A_snapshot_barrier_ending_during_a_switch_to_write_through_lets_no_write_into_the_cache_being_left()
    {
        var backing = new GatedBacking(FileBacking.Open(_fixture.BackingPath, Size, create: true));
        await using var cache = _fixture.Open(Size, _fixture.Options(), backing: backing);
        await cache.WriteAsync(1 * 4096, CacheFixture.Pattern(4096, 1), fua: true);

        backing.Gated = true;
        var switching = cache.SetModeAsync(CacheMode.WriteThrough);
        await backing.Entered.WaitAsync(TimeSpan.FromSeconds(10)); // drain 1 destages block 1
        await cache.WriteAsync(2 * 4096, CacheFixture.Pattern(4096, 2), fua: false); // left for drain 2
        await cache.TrySendAsync(new PauseWrites()); // a multi-volume snapshot's barrier begins
        backing.Open.Release();
        await backing.Entered.WaitAsync(TimeSpan.FromSeconds(10)); // drain 2 (writes "paused" by the switch) destages block 2
        await cache.TrySendAsync(new ResumeWrites()); // the snapshot's barrier ends (done or failed)

        // A write now waits for the switch (it held the cache before): it lands in write-through, not in the cache being left.
        var during = cache.WriteAsync(3 * 4096, CacheFixture.Pattern(4096, 3), fua: false).AsTask();
        await Task.Delay(200);
        Assert.False(during.IsCompleted, "a write went into the cache during the switch's second drain");
        backing.Gated = false;
        backing.Open.Release();
        await switching.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(CacheMode.WriteThrough, cache.Mode);
        await during.WaitAsync(TimeSpan.FromSeconds(10));

        var newer = new byte[4096];
        Array.Fill(newer, (byte)0x55);
        await cache.WriteAsync(3 * 4096, newer, fua: false); // write-through: straight to the backing
        var read = new byte[4096];
        await cache.ReadAsync(3 * 4096, read);
        Assert.Equal(newer, read); // the write the cache kept hid it
        Assert.Equal(0, cache.Index.CachedBlocks);
    }

    /// <summary>The other half: a mode switch ending does not end a snapshot barrier's pause.</summary>
    [Fact]
    public async Task A_mode_switch_ending_does_not_end_a_snapshot_barriers_pause()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options());
        await cache.TrySendAsync(new PauseWrites()); // a multi-volume snapshot's barrier
        var write = cache.WriteAsync(0, CacheFixture.Pattern(4096, 1), fua: false).AsTask();
        await Task.Delay(100);
        Assert.False(write.IsCompleted);
        var switching = cache.SetModeAsync(CacheMode.WriteThrough);
        try
        {
            await switching.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception)
        {
        }
        await Task.Delay(200);
        Assert.False(write.IsCompleted, "the write held by the snapshot barrier went through before ResumeWrites");
        await cache.TrySendAsync(new ResumeWrites());
        await write;
    }
}
