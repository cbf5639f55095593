using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// A failed fdatasync of the log is never retried into an acknowledgement: Linux reports a write-back error once per open
/// file and leaves the pages clean, so the next fdatasync returns 0 although the data never reached the disk. That holds
/// for ENOSPC too (thin provisioning, NFS), which a full file system's writes also report but which, from a sync, is lost data.
/// </summary>
public sealed class SyncFailureTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>fdatasync fails once with <see cref="Error"/>, then succeeds again, as Linux's does after a write-back error.</summary>
    private sealed class FailingOnceMedium(ILogMedium inner, BlockError error) : WrappedMedium(inner)
    {
        public volatile bool Armed;
        public volatile bool Failed;
        public BlockError Error => error;

        public int SyncsAfterFailure;

        public override void Sync()
        {
            if (Armed)
            {
                Armed = false;
                Failed = true;
                throw new BlockTargetException(error, $"fdatasync failed: injected {error}");
            }
            if (Failed) Interlocked.Increment(ref SyncsAfterFailure);
            base.Sync();
        }
    }

    [Theory]
    [InlineData(BlockError.NoSpace)]
    [InlineData(BlockError.Io)]
    public async Task A_flush_whose_fdatasync_failed_fails_and_the_volume_takes_no_more_writes(BlockError error)
    {
        var options = _fixture.Options();
        var medium = new FailingOnceMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize), error);
        await using var cache = _fixture.Open(Size, options, medium: medium);
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 1), fua: true);
        medium.Armed = true;
        await cache.WriteAsync(4096, CacheFixture.Pattern(4096, 2), fua: false);
        var flush = cache.FlushAsync().AsTask();
        var ended = await Task.WhenAny(flush, Task.Delay(TimeSpan.FromSeconds(10))) == flush;
        Assert.True(medium.Failed, "the injected fdatasync failure was not reached");
        Assert.True(ended, "the FLUSH neither failed nor completed");
        await Assert.ThrowsAsync<BlockTargetException>(() => flush);
        // Nor does a later FLUSH succeed on the same log: its fdatasync would return 0 for pages that were lost.
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await cache.WriteAsync(8192, CacheFixture.Pattern(4096, 3), fua: false);
            await cache.FlushAsync();
        });
    }

    [Fact]
    public async Task A_flush_after_a_failed_fdatasync_fails_however_long_it_waits_for_the_periodic_commit()
    {
        // The periodic commit (CommitInterval) ran an fdatasync of its own on the failed log, which returned 0 and closed the
        // sync point of the failed FLUSH: a second FLUSH with no new write then found its ticket closed and succeeded.
        var options = _fixture.Options() with { CommitInterval = TimeSpan.FromMilliseconds(100) };
        var medium = new FailingOnceMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize), BlockError.Io);
        await using var cache = _fixture.Open(Size, options, medium: medium);
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 1), fua: true);
        medium.Armed = true;
        await cache.WriteAsync(4096, CacheFixture.Pattern(4096, 2), fua: false);
        await Assert.ThrowsAsync<BlockTargetException>(() => cache.FlushAsync().AsTask());
        await Task.Delay(1500); // the flusher's retries and several commit intervals
        await Assert.ThrowsAsync<BlockTargetException>(() => cache.FlushAsync().AsTask());
        Assert.Equal(0, medium.SyncsAfterFailure);
    }

    /// <summary>One log write fails, then the fdatasync that ends wiping what it left fails too.</summary>
    private sealed class FailingWipeMedium(ILogMedium inner) : WrappedMedium(inner)
    {
        public volatile bool Armed;
        public volatile bool WipeFailed;
        private volatile bool _writeFailed;

        public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
        {
            if (Armed)
            {
                Armed = false;
                _writeFailed = true;
                throw new BlockTargetException(BlockError.Io, "write failed: injected");
            }
            base.Write(address, buffers);
        }

        public override void Discard(long address, long length)
        {
            if (_writeFailed && !WipeFailed)
            {
                WipeFailed = true;
                throw new BlockTargetException(BlockError.Io, "fdatasync failed: injected while wiping", new LogSyncFailure("injected"));
            }
            base.Discard(address, length);
        }
    }

    [Fact]
    public async Task A_failed_fdatasync_while_wiping_a_failed_write_makes_the_log_untrusted_too()
    {
        var options = _fixture.Options() with { CommitInterval = TimeSpan.FromMilliseconds(100) };
        var medium = new FailingWipeMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        await using var cache = _fixture.Open(Size, options, medium: medium);
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 1), fua: true);
        await cache.WriteAsync(4096, CacheFixture.Pattern(4096, 2), fua: false); // written, not synced: in the same segment
        await Task.Delay(50);
        medium.Armed = true;
        await cache.WriteAsync(8192, CacheFixture.Pattern(4096, 3), fua: false);
        await Assert.ThrowsAsync<BlockTargetException>(() => cache.FlushAsync().AsTask());
        // The flusher's retries: the wipe fails once, then works, and so do the writes (waited for: a retry comes after a backoff).
        for (var waited = 0; !medium.WipeFailed && waited < 100; waited++) await Task.Delay(100);
        Assert.True(medium.WipeFailed, "the injected wipe failure was not reached");
        await Task.Delay(500); // and the retries after it
        await Assert.ThrowsAsync<BlockTargetException>(() => cache.FlushAsync().AsTask());
    }

    /// <summary>Log writes and wipes fail (as a disk that is away does, before any fdatasync) until <see cref="AwayUntil"/>.</summary>
    private sealed class AwayMedium(ILogMedium inner) : WrappedMedium(inner)
    {
        public long AwayUntil; // Environment.TickCount64
        public volatile bool Failed;

        private void ThrowIfAway(string what)
        {
            if (Environment.TickCount64 >= Interlocked.Read(ref AwayUntil)) return;
            Failed = true;
            throw new BlockTargetException(BlockError.Io, $"{what} failed: injected, the disk is away");
        }

        public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
        {
            ThrowIfAway("write");
            base.Write(address, buffers);
        }

        public override void Discard(long address, long length)
        {
            ThrowIfAway("wipe");
            base.Discard(address, length);
        }
    }

    [Fact]
    public async Task A_wipe_that_fails_before_its_fdatasync_is_retried_and_the_log_works_again_when_the_disk_is_back()
    {
        var options = _fixture.Options();
        var medium = new AwayMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        await using var cache = _fixture.Open(Size, options, medium: medium);
        await cache.WriteAsync(0, CacheFixture.Pattern(4096, 1), fua: true);
        // Away until the FLUSH has failed (not for a fixed while: a flusher late on a loaded machine would find the disk back).
        Interlocked.Exchange(ref medium.AwayUntil, long.MaxValue);
        await cache.WriteAsync(4096, CacheFixture.Pattern(4096, 2), fua: false);
        await Assert.ThrowsAsync<BlockTargetException>(() => cache.FlushAsync().AsTask());
        Assert.True(medium.Failed, "the injected failure was not reached");
        await Task.Delay(200); // a retry or two meet it still
        Interlocked.Exchange(ref medium.AwayUntil, Environment.TickCount64);
        // Back now; the flusher's backoff retries meet it (a deadline, not a fixed wait: other test classes load the machine).
        for (var deadline = DateTime.UtcNow.AddSeconds(20); cache.Statistics.LogFailure is not null; await Task.Delay(50))
            Assert.True(DateTime.UtcNow < deadline, $"the log did not recover: {cache.Statistics.LogFailure}");
        await cache.WriteAsync(8192, CacheFixture.Pattern(4096, 3), fua: false);
        await cache.FlushAsync();
        var read = new byte[3 * 4096];
        await cache.ReadAsync(0, read);
        Assert.Equal([.. CacheFixture.Pattern(4096, 1), .. CacheFixture.Pattern(4096, 2), .. CacheFixture.Pattern(4096, 3)], read);
    }
}
