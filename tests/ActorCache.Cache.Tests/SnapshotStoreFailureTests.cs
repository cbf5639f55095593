using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// A snapshot store that fails is never trusted past what it made durable: copies whose fdatasync failed are made again before
/// the backing is overwritten, and a store damaged on disk refuses the views it can no longer serve instead of reading the
/// backing's later data as theirs.
/// </summary>
public sealed class SnapshotStoreFailureTests : IDisposable
{
    private const long Size = 4 << 20;
    private const int Block = 4096;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>Over a log directory: the snapshot store's next fdatasync fails once armed (as a write-back error would), without syncing.</summary>
    private sealed class FailingStoreSync(ILogDirectory inner) : WrappedDirectory(inner)
    {
        public volatile bool Armed;
        public int Failed;

        public override IDurableFile Open(string name, FileMode mode)
        {
            var file = base.Open(name, mode);
            return name == SnapshotStore.FileName ? new File(file, this) : file;
        }

        private sealed class File(IDurableFile inner, FailingStoreSync owner) : IDurableFile
        {
            public string Path => inner.Path;
            public long Length => inner.Length;
            public int Read(Span<byte> destination, long offset) => inner.Read(destination, offset);
            public void Write(ReadOnlySpan<byte> data, long offset) => inner.Write(data, offset);
            public void SetLength(long length) => inner.SetLength(length);
            public void Dispose() => inner.Dispose();

            public void Sync()
            {
                if (owner.Armed)
                {
                    owner.Armed = false;
                    Interlocked.Increment(ref owner.Failed);
                    throw new IOException("injected: fdatasync of the snapshot store failed (EIO)");
                }
                inner.Sync();
            }
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        for (var deadline = DateTime.UtcNow.AddSeconds(30); !condition(); await Task.Delay(20))
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting until {what}");
    }

    [Fact]
    public async Task A_preserved_copy_whose_sync_failed_is_made_durable_again_before_the_backing_is_overwritten()
    {
        var options = _fixture.Options(retention: TimeSpan.Zero);
        var journal = new CrashJournal();
        var directory = new FailingStoreSync(new JournaledDirectory(new LogDirectory(options.LogDirectory), journal));
        var a = CacheFixture.Pattern(Block, 41);
        var b = CacheFixture.Pattern(Block, 42);
        SyncPoint kept;
        await using (var cache = _fixture.Open(Size, options,
                         medium: new JournaledMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize), journal),
                         backing: new JournaledBacking(FileBacking.Open(_fixture.BackingPath, Size, create: true), journal),
                         directory: directory))
        {
            await cache.WriteAsync(0, a, fua: false);
            await cache.FlushAsync();
            kept = cache.History.Latest!.Value;
            await WaitUntilAsync(() => cache.Index.CachedBlocks == 0, "A is destaged");
            Assert.True(await cache.ProtectAsync(kept.Sequence));
            directory.Armed = true;
            await cache.WriteAsync(0, b, fua: false);
            await cache.FlushAsync();
            await WaitUntilAsync(() => directory.Failed == 1, "the store's sync fails");
            // The step is retried after its back-off and completes: B is on the backing, the horizon moved.
            await WaitUntilAsync(() => cache.Index.CachedBlocks == 0 && cache.Statistics.BackingFailure is null, "the step is retried");
        }

        // Power is cut now: whatever of the store was never fdatasync'ed is gone.
        var ops = journal.Snapshot();
        var image = Path.Combine(_fixture.Directory, "cut");
        new CrashImages(ops, options.SegmentSize).Build(ops.Count, CrashImages.Unsynced.Lost, new Random(1), Path.Combine(image, "log"),
            Path.Combine(image, "backing.img"), Size);
        await using var reopened = _fixture.Open(Size, options with { LogDirectory = Path.Combine(image, "log") },
            backing: FileBacking.Open(Path.Combine(image, "backing.img"), Size, create: false), kept: [kept.Sequence]);
        await using var view = await reopened.OpenViewAsync(kept);
        var read = new byte[Block];
        await view.ReadAsync(0, read);
        Assert.Equal(a, read);
    }

    [Fact]
    public async Task A_damaged_snapshot_store_refuses_views_of_points_it_served_instead_of_reading_the_backing()
    {
        var options = _fixture.Options(retention: TimeSpan.Zero);
        var a = CacheFixture.Pattern(Block, 51);
        var b = CacheFixture.Pattern(Block, 52);
        SyncPoint kept;
        await using (var cache = _fixture.Open(Size, options))
        {
            await cache.WriteAsync(0, a, fua: false);
            await cache.FlushAsync();
            kept = cache.History.Latest!.Value;
            await WaitUntilAsync(() => cache.Index.CachedBlocks == 0, "A is destaged");
            Assert.True(await cache.ProtectAsync(kept.Sequence));
            await cache.WriteAsync(0, b, fua: false);
            await cache.FlushAsync();
            await WaitUntilAsync(() => cache.Index.CachedBlocks == 0 && cache.Statistics.PreservedBlocks > 0, "B is destaged over a preserved A");
        }
        var store = Path.Combine(options.LogDirectory, SnapshotStore.FileName);
        using (var file = new FileStream(store, FileMode.Open)) file.SetLength(0); // the store lost its copies (damage, a bad restore)
        await using var reopened = _fixture.Open(Size, options, kept: [kept.Sequence]);
        var refused = await Assert.ThrowsAsync<BlockTargetException>(() => reopened.OpenViewAsync(kept));
        Assert.Contains("snapshot store", refused.Message);
        // Nor does it say what changed since the point: the copies that told which blocks were destaged past it may be lost. A
        // diff is refused, and a resync that would narrow itself to the blocks changed since gets no answer (it resyncs in full).
        await Assert.ThrowsAsync<BlockTargetException>(() => reopened.TrySendAsync(new DiffPoints(PointQuery.Known(kept), null)).AsTask());
        Assert.Null(await reopened.ChangedSinceAsync(kept.Sequence));
        // The live volume reads on.
        var live = new byte[Block];
        await reopened.ReadAsync(0, live);
        Assert.Equal(b, live);
    }
}
