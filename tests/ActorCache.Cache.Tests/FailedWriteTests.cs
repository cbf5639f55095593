using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// A log write that fails part-way can leave a valid header behind. When the batch is retried somewhere
/// else (it grew meanwhile and no longer fits in the rest of the segment), that header must not make
/// recovery stop there and cut off what later, flushed batches hold.
/// </summary>
public sealed class FailedWriteTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>Once armed, writes only the header of the next batch, lets the test queue more, then fails like a dying disk.</summary>
    private sealed class HeaderOnlyOnceMedium(ILogMedium inner) : WrappedMedium(inner)
    {
        public volatile bool Armed;
        public readonly SemaphoreSlim Failing = new(0);
        public readonly SemaphoreSlim Go = new(0);

        public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
        {
            if (!Armed)
            {
                base.Write(address, buffers);
                return;
            }
            Armed = false;
            base.Write(address, [buffers[0]]);
            Failing.Release();
            Go.Wait();
            throw new BlockTargetException(BlockError.Io, "injected: the write failed after its header reached the disk");
        }
    }

    [Fact]
    public async Task A_batch_retried_at_the_next_segment_leaves_no_header_that_cuts_flushed_data_off()
    {
        var options = _fixture.Options(segmentSize: 256 << 10); // 63-block batches: a batch of 63 fills a segment
        var medium = new HeaderOnlyOnceMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        var first = CacheFixture.Pattern(4096, 1);
        var second = CacheFixture.Pattern(4096, 2);
        var third = CacheFixture.Pattern(62 * 4096, 3);
        await using (var cache = _fixture.Open(Size, options, medium: medium))
        {
            await cache.WriteAsync(0, first, fua: true); // the tail is now inside segment 0
            medium.Armed = true;
            await cache.WriteAsync(4096, second, fua: false);
            Assert.True(await medium.Failing.WaitAsync(TimeSpan.FromSeconds(10)), "the flusher never tried to write");
            await cache.WriteAsync(8192, third, fua: false); // the retried batch is 63 blocks: it goes to segment 1
            medium.Go.Release();
            // FLUSHes fail while the log fails; the flusher retries, and the FLUSH after that covers everything.
            for (var deadline = DateTime.UtcNow.AddSeconds(20); cache.Statistics.LogFailure is not null || cache.Statistics.BatchesWritten < 2; await Task.Delay(20))
                Assert.True(DateTime.UtcNow < deadline, "the flusher never wrote again");
            await cache.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        }
        await using var reopened = _fixture.Open(Size, options);
        Assert.Null(reopened.Recovery.TornTail);
        Assert.Null(reopened.Recovery.Corruption);
        var read = new byte[64 * 4096];
        await reopened.ReadAsync(0, read);
        Assert.Equal(first, read.AsSpan(0, 4096).ToArray());
        Assert.Equal(second, read.AsSpan(4096, 4096).ToArray());
        Assert.Equal(third, read.AsSpan(8192, 62 * 4096).ToArray());
    }
}
