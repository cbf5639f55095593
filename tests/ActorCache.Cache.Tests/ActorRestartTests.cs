namespace ActorCache.Cache.Tests;

/// <summary>
/// An unexpected exception in the flusher actor (a bug, not a disk error) makes its supervisor restart
/// it. A restart is not a stop: writes queued before it reach the log afterwards and a FLUSH waiting
/// through it completes, instead of failing as if the volume had closed.
/// </summary>
public sealed class ActorRestartTests : IDisposable
{
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>Throws a non-disk exception from the next log write once armed, then behaves.</summary>
    private sealed class OnceBrokenMedium(ILogMedium inner) : WrappedMedium(inner)
    {
        public volatile bool Armed;
        public int Thrown;

        public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
        {
            if (Armed)
            {
                Armed = false;
                Interlocked.Increment(ref Thrown);
                throw new InvalidOperationException("injected: a bug in the flusher's path");
            }
            base.Write(address, buffers);
        }
    }

    [Fact]
    public async Task A_restarted_flusher_carries_on_and_the_waiting_flush_completes()
    {
        const long size = 8 << 20;
        var options = _fixture.Options();
        var medium = new OnceBrokenMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        var data = CacheFixture.Pattern(64 << 10, 21);
        await using (var cache = _fixture.Open(size, options, medium: medium))
        {
            medium.Armed = true;
            await cache.WriteAsync(0, data, fua: false);
            await cache.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(1, medium.Thrown);
        }
        await using (var reopened = _fixture.Open(size, options))
        {
            var read = new byte[data.Length];
            await reopened.ReadAsync(0, read);
            Assert.Equal(data, read);
        }
    }
}
