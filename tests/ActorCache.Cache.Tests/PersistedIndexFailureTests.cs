using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// The persisted index is a shortcut and a proof: one that cannot be read costs open time only, its save loop never fails a
/// close, and the batch it was taken at proves the log durable through it, so a record before it that rots is corruption.
/// </summary>
public sealed class PersistedIndexFailureTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    private CacheOptions Options() => _fixture.Options(segmentSize: 256 << 10) with { MaxBatchBlocks = 16 };

    /// <summary>An index file that cannot be read (EIO on a bad sector) costs open time only: the log still has everything.</summary>
    [Fact]
    public async Task An_unreadable_persisted_index_falls_back_to_a_full_replay()
    {
        var options = Options() with { FullReplayBelow = 0 };
        var data = CacheFixture.Pattern(8 * 4096, 7);
        await using (var cache = _fixture.Open(Size, options))
        {
            await cache.WriteAsync(0, data, fua: false);
            await cache.FlushAsync();
        }
        Assert.True(File.Exists(Path.Combine(options.LogDirectory, PersistedIndex.FileName)));

        var directory = new FailingIndexDirectory(new LogDirectory(options.LogDirectory));
        await using var reopened = _fixture.Open(Size, options, directory: directory);
        var read = new byte[data.Length];
        await reopened.ReadAsync(0, read);
        Assert.Equal(data, read);
    }

    /// <summary>
    /// A FLUSHed write whose record rots on disk after a clean close: the persisted index saved at the close proves the record was
    /// durable (it was taken only once the log was durable through it), so the damage is corruption (EIO, read-only), not a torn
    /// tail cut off without a word. With the default full-replay-below the open ignores that proof.
    /// </summary>
    [Fact]
    public async Task A_rotten_last_flushed_record_is_corruption_not_a_torn_tail()
    {
        var options = Options(); // default full-replay-below (256 MiB): a small log is replayed whole
        var old = CacheFixture.Pattern(4096, 1);
        var flushed = CacheFixture.Pattern(4096, 2);
        await using (var cache = _fixture.Open(Size, options))
        {
            await cache.WriteAsync(0, old, fua: false);
            await cache.FlushAsync();
            await cache.WriteAsync(0, flushed, fua: false);
            await cache.FlushAsync(); // acknowledged: durable
        }
        Assert.True(File.Exists(Path.Combine(options.LogDirectory, PersistedIndex.FileName)));

        // Find the last batch with data and flip a bit in its data.
        long lastData = -1;
        using (var medium = new SegmentFiles(options.LogDirectory, options.SegmentSize))
        {
            var reader = new LogReader(medium, Checkpoint.Load(options.LogDirectory)!.VolumeId);
            long address = Checkpoint.Load(options.LogDirectory)!.Horizon, sequence = Checkpoint.Load(options.LogDirectory)!.Sequence;
            while (reader.TryFind(ref address, sequence++, out var header))
            {
                if (header.DataBlocks > 0) lastData = address;
                address += header.SizeBytes;
            }
        }
        Assert.True(lastData >= 0);
        CacheFixture.FlipLogByte(options, lastData + 4096 + 100, 0x01);

        await using var reopened = _fixture.Open(Size, options);
        var read = new byte[4096];
        Exception? failed = null;
        try
        {
            await reopened.ReadAsync(0, read);
        }
        catch (BlockTargetException e)
        {
            failed = e;
        }
        Assert.False(failed is null && read.AsSpan().SequenceEqual(old),
            $"a FLUSHed write was silently lost: block 0 reads its older version; torn tail: {reopened.Recovery.TornTail}; corruption: {reopened.Recovery.Corruption}");
        Assert.NotNull(reopened.Recovery.Corruption);
    }

    private sealed class FailingWritesMedium(ILogMedium inner) : WrappedMedium(inner)
    {
        public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers) =>
            throw new BlockTargetException(BlockError.Io, "injected: the log disk fails");
    }

    /// <summary>
    /// The flusher actor stops (the actor system shuts down first) while a periodic index save waits for its capture: the capture
    /// is cancelled, the save loop dies with that cancellation, and the volume's close then throws it instead of closing.
    /// </summary>
    [Fact]
    public async Task A_flusher_gone_during_a_periodic_index_save_does_not_break_the_close()
    {
        // An actor system of its own: the flusher is stopped by name, and the shared one runs other tests' flushers.
        using var system = Akka.Actor.ActorSystem.Create("flusher-gone", ActorCache.Cache.Actors.CacheDispatchers.Hocon);
        var options = Options() with { IndexSaveInterval = TimeSpan.FromMilliseconds(1), FullReplayBelow = 0 };
        var medium = new FailingWritesMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        var cache = WriteBackCache.Open("gone", FileBacking.Open(_fixture.BackingPath, Size, create: true), CacheFixture.SharedRing, options,
            CacheMode.WriteBack, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, system, medium: medium);
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 3), fua: false); // queued; its batch never completes
        await Task.Delay(300); // the save loop has begun a capture that waits for that batch
        var flusher = await system.ActorSelection("/user/flusher-gone-*").ResolveOne(TimeSpan.FromSeconds(5));
        flusher.Tell(Akka.Actor.PoisonPill.Instance, Akka.Actor.ActorRefs.NoSender);
        await Task.Delay(300);
        var report = await cache.CloseAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)); // it threw the capture's cancellation
        Assert.NotNull(report.Problem);
    }

    private sealed class FailingIndexDirectory(ILogDirectory inner) : WrappedDirectory(inner)
    {
        public override IDurableFile Open(string name, FileMode mode) =>
            name == PersistedIndex.FileName && mode == FileMode.Open ? new Failing(base.Open(name, mode)) : base.Open(name, mode);

        private sealed class Failing(IDurableFile file) : IDurableFile
        {
            public string Path => file.Path;
            public long Length => file.Length;
            public int Read(Span<byte> destination, long offset) => throw new IOException("Input/output error");
            public void Write(ReadOnlySpan<byte> data, long offset) => file.Write(data, offset);
            public void SetLength(long length) => file.SetLength(length);
            public void Sync() => file.Sync();
            public void Dispose() => file.Dispose();
        }
    }
}
