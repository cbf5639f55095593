namespace ActorCache.Cache.Tests;

/// <summary>Holds every log write at a gate the test opens, so a test can act while a batch is being written.</summary>
internal sealed class GatedMedium(ILogMedium inner) : WrappedMedium(inner)
{
    public readonly SemaphoreSlim Entered = new(0);
    public readonly SemaphoreSlim Open = new(0);
    public volatile bool Gated;

    /// <summary>A gated medium over the segment files of <paramref name="options"/>' log directory.</summary>
    public static GatedMedium Over(CacheOptions options) => new(new SegmentFiles(options.LogDirectory, options.SegmentSize));

    /// <summary>A FLUSH arrives while the gated batch is being written, then the gate opens: returns once the FLUSH completed.</summary>
    public async Task FlushThenOpenAsync(WriteBackCache cache)
    {
        var flush = cache.FlushAsync().AsTask();
        Gated = false;
        Open.Release();
        await flush.WaitAsync(TimeSpan.FromSeconds(10));
    }

    public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
    {
        if (Gated)
        {
            Entered.Release();
            Open.Wait();
        }
        base.Write(address, buffers);
    }
}
