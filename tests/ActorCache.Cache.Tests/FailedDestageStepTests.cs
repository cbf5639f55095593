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
        public volatile bool WroteBlock0WhileFailing; // a step that failed got as far as block 0

        public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
        {
            if (Fail && offset == 0) WroteBlock0WhileFailing = true;
            return base.WriteAsync(offset, data, fua, cancellationToken);
        }

        public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            if (Fail) BlockThrow.Error(BlockError.Io, "injected: the backing's flush failed");
            return Below.FlushAsync(cancellationToken);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30); // a failed step is retried after a backoff
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
            // Under load a first step may take C's batch alone and fail (its last batch is q: q rightly stays restorable); the one
            // that wrote B passed q.
            await WaitUntilAsync(() => backing.WroteBlock0WhileFailing, "no step wrote B");
            await CloseWhileTheBackingFailsAsync(cache);
        }

        await using var reopened = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.FromHours(1)));
        Assert.Null(reopened.History.Find(q.Generation));
        Assert.False(await reopened.ProtectAsync(q.Sequence), "a snapshot of a point the backing no longer holds was kept after the restart");
        Assert.Equal(b, await ReadAsync(reopened, 0));
        Assert.Equal(c, await ReadAsync(reopened, 2));
    }

    [Fact]
    public async Task A_point_a_peer_had_not_confirmed_yet_is_not_offered_after_a_crash_in_a_step_past_it()
    {
        // Under protocol C a FLUSH's sync point is in the local log (and may be destaged past) before the peer confirms it, so
        // the history does not hold it yet; a restart's replay finds it all the same.
        var backing = new FailingFlush(FileBacking.Open(_fixture.BackingPath, Size, create: true));
        var b = CacheFixture.Pattern(Block, 6);
        var c = CacheFixture.Pattern(Block, 7);
        long unconfirmed;
        await using (var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero), backing: backing))
        {
            await cache.WriteAsync(0, CacheFixture.Pattern(Block, 8), fua: false);
            await cache.FlushAsync();
            await WaitUntilAsync(() => cache.Index.CachedBlocks == 0, "the first write was not destaged");
            unconfirmed = cache.History.Latest!.Value.Generation + 1;
            cache.Barrier.Join("peer that never confirms", durableSequence: 0);
            backing.Fail = true;
            await cache.WriteAsync(2 * Block, c, fua: false);
            var syncs = cache.Statistics.Syncs;
            _ = cache.FlushAsync().AsTask(); // closes generation `unconfirmed` in the log; waits for the peer
            await WaitUntilAsync(() => cache.Statistics.Syncs > syncs, "the FLUSH's batch was not synced"); // B goes into a later batch
            await cache.WriteAsync(0, b, fua: false);
            _ = cache.FlushAsync().AsTask();
            // A first step may take the first batch alone (its point is then the backing's own); the one that wrote B passed it.
            await WaitUntilAsync(() => backing.WroteBlock0WhileFailing, "no step wrote the second batch");
            Assert.Null(cache.History.Find(unconfirmed));
            await CloseWhileTheBackingFailsAsync(cache);
        }

        await using var reopened = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.FromHours(1)));
        Assert.Null(reopened.History.Find(unconfirmed)); // it read block 0 as the first write, which the backing no longer holds
        Assert.Equal(b, await ReadAsync(reopened, 0));
        Assert.Equal(c, await ReadAsync(reopened, 2));
    }

    /// <summary>Counts the backing's flushes: a destage step's last act before its checkpoint.</summary>
    private sealed class CountingFlush(IBlockTarget below) : ForwardingTarget(below)
    {
        public int Flushes;

        public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref Flushes);
            return Below.FlushAsync(cancellationToken);
        }
    }

    /// <summary>Over a log directory: once armed, the first checkpoint save after the backing's next flush fails (EIO on the log's disk).</summary>
    private sealed class FailingCheckpointAfterFlush(ILogDirectory inner, CountingFlush backing) : WrappedDirectory(inner)
    {
        private int _armedAt = -1;
        public volatile bool Failed;
        public void Arm() => _armedAt = Volatile.Read(ref backing.Flushes);

        public override IDurableFile Open(string name, FileMode mode)
        {
            if (name == Checkpoint.FileName && _armedAt >= 0 && Volatile.Read(ref backing.Flushes) > _armedAt)
            {
                _armedAt = -1;
                Failed = true;
                throw new IOException("injected: the checkpoint cannot be written");
            }
            return base.Open(name, mode);
        }
    }

    [Fact]
    public async Task A_step_whose_checkpoint_failed_is_not_followed_by_a_shorter_one_that_writes_an_older_version_back()
    {
        // A drain's step wrote block 0's newest version (v2) and told the index the backing has it; then its checkpoint failed, so
        // the drain was given up. A retry that planned only what was due by age (v1's batch) would write v1 over v2 on the
        // backing, and the index would serve v1: an acknowledged, flushed write gone back a version.
        var backing = new CountingFlush(FileBacking.Open(_fixture.BackingPath, Size, create: true));
        var options = _fixture.Options(retention: TimeSpan.FromSeconds(1));
        var directory = new FailingCheckpointAfterFlush(new LogDirectory(options.LogDirectory), backing);
        await using var cache = _fixture.Open(Size, options, backing: backing, directory: directory);
        var v1 = CacheFixture.Pattern(Block, 11);
        var v2 = CacheFixture.Pattern(Block, 12);
        await cache.WriteAsync(0, v1, fua: true);
        await Task.Delay(500); // v1's batch is due half a second before v2's
        await cache.WriteAsync(0, v2, fua: true);
        directory.Arm();
        await Assert.ThrowsAnyAsync<BlockTargetException>(() => cache.DrainAsync());
        Assert.True(directory.Failed);
        for (var until = DateTime.UtcNow.AddSeconds(2); DateTime.UtcNow < until; await Task.Delay(5))
            Assert.Equal(v2, await ReadAsync(cache, 0));
        await WaitUntilAsync(() => cache.Index.CachedBlocks == 0, "everything is destaged");
        Assert.Equal(v2, await ReadAsync(cache, 0));
        await using var view = await cache.OpenViewAsync(cache.History.Latest!.Value);
        Assert.Equal(v2, await ReadAsync(view, 0));
    }

    /// <summary>Closes the cache while its backing still fails: as a crash in the middle of a step, its horizon never moved.</summary>
    private static async Task CloseWhileTheBackingFailsAsync(WriteBackCache cache)
    {
        try
        {
            await cache.DisposeAsync();
        }
        catch (Exception)
        {
            // the close's drain fails on the backing too
        }
    }
}
