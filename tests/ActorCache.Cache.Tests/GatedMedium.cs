namespace ActorCache.Cache.Tests;

/// <summary>Holds every log write at a gate the test opens, so a test can act while a batch is being written.</summary>
internal sealed class GatedMedium(ILogMedium inner) : WrappedMedium(inner)
{
    public readonly SemaphoreSlim Entered = new(0);
    public readonly SemaphoreSlim Open = new(0);
    public volatile bool Gated;

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
