namespace ActorCache.Cache.Tests;

/// <summary>A log medium that passes everything to a real one; tests override the call they want to disturb.</summary>
internal abstract class WrappedMedium(ILogMedium inner) : ILogMedium
{
    public long SegmentSize => inner.SegmentSize;
    public IReadOnlyList<long> Segments => inner.Segments;

    public virtual void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers) => inner.Write(address, buffers);
    public virtual void Sync() => inner.Sync();
    public void PrepareAhead(long tail) => inner.PrepareAhead(tail);
    public bool TryRead(long address, Span<byte> destination) => inner.TryRead(address, destination);
    public virtual void Discard(long address, long length) => inner.Discard(address, length);
    public void Release(long segment) => inner.Release(segment);
    public void Dispose() => inner.Dispose();
}
