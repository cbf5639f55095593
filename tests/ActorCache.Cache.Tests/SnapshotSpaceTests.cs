using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// Preserved copies stay within cache.snapshot-space: copies no kept point reads are compacted away, and
/// past the limit the policy decides: expire the oldest kept snapshot (and say so), or protect it and
/// let destaging wait. Acknowledged writes are never lost for a snapshot's sake.
/// </summary>
public sealed class SnapshotSpaceTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    private CacheOptions Options(long space, SnapshotSpacePolicy policy) =>
        _fixture.Options(retention: TimeSpan.Zero, segmentSize: 256 << 10) with { SnapshotSpace = space, SnapshotSpacePolicy = policy };

    /// <summary>Writes <paramref name="blocks"/> blocks of one pattern from block 0, flushes, and keeps the point that FLUSH closed.</summary>
    private static async Task<SyncPoint> WriteAndKeepAsync(WriteBackCache cache, int blocks, int seed)
    {
        await cache.WriteAsync(0, CacheFixture.Pattern(blocks * 4096, seed), fua: false);
        await cache.FlushAsync();
        var point = cache.History.Latest!.Value;
        Assert.True(await cache.ProtectAsync(point.Sequence));
        return point;
    }

    private static async Task WaitAsync(Func<bool> condition, string what)
    {
        for (var deadline = DateTime.UtcNow.AddSeconds(20); !condition(); await Task.Delay(20))
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out waiting until {what}");
    }

    private static async Task<byte[]> ReadViewAsync(WriteBackCache cache, SyncPoint point, int length)
    {
        await using var view = await cache.OpenViewAsync(point);
        var read = new byte[length];
        await view.ReadAsync(0, read);
        return read;
    }

    [Fact]
    public async Task A_kept_snapshot_someone_reads_does_not_expire_the_next_oldest_does()
    {
        await using var cache = _fixture.Open(Size, Options(space: 64 << 10, SnapshotSpacePolicy.ExpireOldest));
        var expired = new List<long>();
        cache.PointExpired += sequence => { lock (expired) expired.Add(sequence); };
        var read = await WriteAndKeepAsync(cache, 8, 1);
        var old = await WriteAndKeepAsync(cache, 8, 2);
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "both writes are destaged");
        await using var clone = await cache.OpenViewAsync(read); // a thin clone reads through to the oldest
        // Each overwrite of the 8 blocks needs copies for both points; past 16 copies one must go: not the one being read.
        for (var round = 3; round < 6; round++)
        {
            await cache.WriteAsync(0, CacheFixture.Pattern(8 * 4096, round), fua: true);
            await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the overwrite is destaged");
        }
        Assert.Equal([old.Sequence], expired);
        var content = new byte[8 * 4096];
        await clone.ReadAsync(0, content);
        Assert.Equal(CacheFixture.Pattern(8 * 4096, 1), content);
    }

    [Fact]
    public async Task A_kept_snapshot_a_clone_needs_while_it_is_not_open_does_not_expire_the_next_oldest_does()
    {
        // A thin clone that is offline, or opens after its origin at node start, reads nothing yet: the host pins its point, or the
        // clone would find its snapshot expired for good and lose every block it has not written.
        long? needed = null;
        await using var cache = _fixture.Open(Size, Options(space: 64 << 10, SnapshotSpacePolicy.ExpireOldest), pinned: s => s == needed);
        var expired = new List<long>();
        cache.PointExpired += sequence => { lock (expired) expired.Add(sequence); };
        var cloned = await WriteAndKeepAsync(cache, 8, 1);
        needed = cloned.Sequence;
        var old = await WriteAndKeepAsync(cache, 8, 2);
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "both writes are destaged");
        for (var round = 3; round < 6; round++)
        {
            await cache.WriteAsync(0, CacheFixture.Pattern(8 * 4096, round), fua: true);
            await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the overwrite is destaged");
        }
        Assert.Equal([old.Sequence], expired);
        Assert.Equal(CacheFixture.Pattern(8 * 4096, 1), await ReadViewAsync(cache, cloned, 8 * 4096)); // the clone, when it opens, reads its snapshot
    }

    [Fact]
    public async Task Past_the_limit_the_oldest_kept_snapshot_expires_and_writes_go_on()
    {
        await using var cache = _fixture.Open(Size, Options(space: 64 << 10, SnapshotSpacePolicy.ExpireOldest));
        var expired = new List<long>();
        cache.PointExpired += sequence => { lock (expired) expired.Add(sequence); };
        var old = await WriteAndKeepAsync(cache, 32, 1);
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the first write is destaged");
        // Overwriting 32 kept blocks needs 32 copies; 16 fit: the kept point expires instead.
        await cache.WriteAsync(0, CacheFixture.Pattern(32 * 4096, 2), fua: true);
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the overwrite is destaged");
        Assert.Equal([old.Sequence], expired);
        Assert.Equal(1, cache.Statistics.ExpiredSnapshots);
        Assert.True(cache.Statistics.PreservedBytes <= 64 << 10);
        await Assert.ThrowsAsync<BlockTargetException>(() => cache.OpenViewAsync(old));
        var live = new byte[32 * 4096];
        await cache.ReadAsync(0, live);
        Assert.Equal(CacheFixture.Pattern(32 * 4096, 2), live);
    }

    [Fact]
    public async Task A_point_that_expired_is_not_kept_again_by_a_restart_before_the_host_recorded_the_expiry()
    {
        // The host records an expiry after the cache has made it (and destaged past it): a crash in between reopens the volume with
        // the snapshot still listed as kept. Its preserved copies are gone, so honouring it would serve the overwrite as its content.
        var options = Options(space: 64 << 10, SnapshotSpacePolicy.ExpireOldest);
        SyncPoint old;
        await using (var cache = _fixture.Open(Size, options))
        {
            old = await WriteAndKeepAsync(cache, 32, 1);
            await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the first write is destaged");
            await cache.WriteAsync(0, CacheFixture.Pattern(32 * 4096, 2), fua: true);
            await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the overwrite is destaged");
            Assert.Equal(1, cache.Statistics.ExpiredSnapshots);
        }
        await using (var reopened = _fixture.Open(Size, options, kept: [old.Sequence]))
        {
            Assert.Equal([old.Sequence], reopened.ExpiredAtOpen);
            await Assert.ThrowsAsync<BlockTargetException>(() => reopened.OpenViewAsync(old));
        }
        // Once the host has recorded it (the point is no longer passed as kept), it is forgotten: a later open names nothing.
        await using (var again = _fixture.Open(Size, options))
            Assert.Empty(again.ExpiredAtOpen);
        await using (var last = _fixture.Open(Size, options, kept: [old.Sequence]))
            Assert.Empty(last.ExpiredAtOpen);
    }

    [Fact]
    public async Task With_protect_the_snapshot_stays_and_destaging_waits_until_it_is_deleted()
    {
        await using var cache = _fixture.Open(Size, Options(space: 64 << 10, SnapshotSpacePolicy.Protect));
        var old = await WriteAndKeepAsync(cache, 32, 1);
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the first write is destaged");
        await cache.WriteAsync(0, CacheFixture.Pattern(32 * 4096, 2), fua: true); // acknowledged and durable in the log
        await WaitAsync(() => cache.Statistics.BackingFailure is not null, "destaging reports that it waits");
        Assert.Contains("snapshot-space", cache.Statistics.BackingFailure);
        Assert.Equal(CacheFixture.Pattern(32 * 4096, 1), await ReadViewAsync(cache, old, 32 * 4096));
        var live = new byte[32 * 4096];
        await cache.ReadAsync(0, live);
        Assert.Equal(CacheFixture.Pattern(32 * 4096, 2), live);

        cache.Unprotect(old.Sequence); // the snapshot is deleted: destaging goes on
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0 && cache.Statistics.BackingFailure is null, "destaging resumes");
    }

    [Fact]
    public async Task Copies_nobody_reads_are_compacted_away_and_the_rest_still_read()
    {
        await using var cache = _fixture.Open(Size, Options(space: 192 << 10, SnapshotSpacePolicy.ExpireOldest));
        var first = await WriteAndKeepAsync(cache, 24, 1);
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the first write is destaged");
        var second = await WriteAndKeepAsync(cache, 24, 2); // overwrites: 24 copies for the first point
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the second write is destaged");
        Assert.Equal(24, cache.Statistics.PreservedBlocks);
        cache.Unprotect(first.Sequence); // its 24 copies are dead now
        await cache.WriteAsync(0, CacheFixture.Pattern(24 * 4096, 3), fua: true); // 24 more copies for the second: only fit after compaction
        await WaitAsync(() => cache.Statistics.CachedBlocks == 0, "the third write is destaged");
        Assert.True(cache.Statistics.PreservedBytes <= 192 << 10, $"the store holds {cache.Statistics.PreservedBytes} bytes");
        Assert.Equal(0, cache.Statistics.ExpiredSnapshots);
        Assert.Equal(CacheFixture.Pattern(24 * 4096, 2), await ReadViewAsync(cache, second, 24 * 4096));
    }

    /// <summary>Counts how often the snapshot store is replaced by a compacted one.</summary>
    private sealed class CountingDirectory(ILogDirectory inner) : WrappedDirectory(inner)
    {
        public int StoreReplaces;

        public override void Replace(string source, string destination)
        {
            if (destination == SnapshotStore.FileName) Interlocked.Increment(ref StoreReplaces);
            base.Replace(source, destination);
        }
    }

    [Fact]
    public async Task Under_protect_a_store_whose_copies_are_all_read_is_not_rewritten_at_every_retry()
    {
        // The store's length counts batch headers, which the live bytes did not: every retry of the refused step compacted (rewrote
        // and synced) a store with nothing to give back.
        var options = Options(space: 64 << 10, SnapshotSpacePolicy.Protect);
        Directory.CreateDirectory(options.LogDirectory);
        var directory = new CountingDirectory(new LogDirectory(options.LogDirectory));
        await using var cache = _fixture.Open(Size, options, directory: directory);
        for (var round = 1; round <= 2; round++)
        {
            await WriteAndKeepAsync(cache, 12, round);
            await WaitAsync(() => cache.Statistics.CachedBlocks == 0 || cache.Statistics.BackingFailure is not null, $"round {round} is destaged or refused");
        }
        await cache.WriteAsync(0, CacheFixture.Pattern(12 * 4096, 3), fua: true);
        await WaitAsync(() => cache.Statistics.BackingFailure is not null, "the step past the limit is refused");
        var before = directory.StoreReplaces;
        await Task.Delay(3000); // the destager retries the step meanwhile
        Assert.True(directory.StoreReplaces - before <= 1, $"the store, all of it read, was rewritten {directory.StoreReplaces - before} times in 3 s");
    }
}
