using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// A destage step writes the backing before the horizon moves past it. When it fails half-way (the backing's flush fails)
/// or a crash cuts it off, the backing already holds newer blocks than the sync points before the step read, so those
/// points are no longer offered: neither to a view nor to a new snapshot, and not after a restart either. The volume's
/// own content is unaffected, and the points the step leaves alone stay restorable.
/// </summary>
public sealed class FailedDestageStepTests : IDisposable
{
    private const long Size = 4 << 20;
    private const int Block = 4096;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    private sealed class FailingFlush(IBlockTarget below) : ForwardingTarget(below)
    {
        public volatile bool Fail;

        public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            if (Fail) BlockThrow.Error(BlockError.Io, "injected: the backing's flush failed");
            return Below.FlushAsync(cancellationToken);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what);
            await Task.Delay(20);
        }
    }

    private static async Task<byte[]> ReadAsync(IBlockTarget target, long block)
    {
        var data = new byte[Block];
        await target.ReadAsync(block * Block, data);
        return data;
    }

    [Fact]
    public async Task Points_before_a_step_that_failed_half_way_are_no_longer_offered()
    {
        var backing = new FailingFlush(FileBacking.Open(_fixture.BackingPath, Size, create: true));
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero), backing: backing);
        var a = CacheFixture.Pattern(Block, 1);
        await cache.WriteAsync(0, a, fua: false);
        await cache.FlushAsync();
        var p1 = cache.History.Latest!.Value; // block 0 holds A
        await WaitUntilAsync(() => cache.Index.CachedBlocks == 0, "A was not destaged");
        await using (var view = await cache.OpenViewAsync(p1)) Assert.Equal(a, await ReadAsync(view, 0)); // the backing itself: restorable

        backing.Fail = true;
        var b = CacheFixture.Pattern(Block, 2);
        await cache.WriteAsync(0, b, fua: false);
        await cache.FlushAsync();
        var p2 = cache.History.Latest!.Value;
        await WaitUntilAsync(() => cache.Statistics.BackingFailure is not null, "the step did not fail");

        // The step wrote B to the backing before its flush failed: P1 would read B there.
        Assert.Null(cache.History.Find(p1.Generation));
        Assert.False(await cache.ProtectAsync(p1.Sequence), "a snapshot of a point the backing no longer holds was kept");
        await Assert.ThrowsAnyAsync<Exception>(() => cache.OpenViewAsync(p1));
        await using (var view = await cache.OpenViewAsync(p2)) Assert.Equal(b, await ReadAsync(view, 0));
        Assert.Equal(b, await ReadAsync(cache, 0));

        backing.Fail = false;
        await WaitUntilAsync(() => cache.Statistics.BackingFailure is null && cache.Index.CachedBlocks == 0, "the step was not retried");
        Assert.Equal(b, await ReadAsync(cache, 0));
    }

    [Fact]
    public async Task Points_before_a_step_cut_off_by_a_crash_are_not_offered_after_the_restart()
    {
        var backing = new FailingFlush(FileBacking.Open(_fixture.BackingPath, Size, create: true));
        var a = CacheFixture.Pattern(Block, 3);
        var b = CacheFixture.Pattern(Block, 4);
        var c = CacheFixture.Pattern(Block, 5);
        SyncPoint q;
        await using (var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero), backing: backing))
        {
            await cache.WriteAsync(0, a, fua: false);
            await cache.FlushAsync();
            await WaitUntilAsync(() => cache.Index.CachedBlocks == 0, "A was not destaged");
            backing.Fail = true;
            await cache.WriteAsync(2 * Block, c, fua: false);
            await cache.FlushAsync();
            q = cache.History.Latest!.Value; // block 0 holds A, block 2 C
            await cache.WriteAsync(0, b, fua: false);
            await cache.FlushAsync();
            await WaitUntilAsync(() => cache.Statistics.BackingFailure is not null, "the step did not fail");
            // Closed while the backing still fails: as a crash in the middle of the step, its horizon never moved.
            try
            {
                await cache.DisposeAsync();
            }
            catch (Exception)
            {
                // the close's drain fails on the backing too
            }
        }

        await using var reopened = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.FromHours(1)));
        Assert.Null(reopened.History.Find(q.Generation));
        Assert.False(await reopened.ProtectAsync(q.Sequence), "a snapshot of a point the backing no longer holds was kept after the restart");
        Assert.Equal(b, await ReadAsync(reopened, 0));
        Assert.Equal(c, await ReadAsync(reopened, 2));
    }
}
