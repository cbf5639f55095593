namespace ActorCache.Blocks;

/// <summary>
/// A fault-injecting target for tests (DESIGN §1): while <see cref="FailWrites"/> is set, every write,
/// trim, zero and flush fails with EIO, the way a dying disk does; reads keep working.
/// </summary>
public sealed class FaultyTarget(IBlockTarget below) : IBlockTarget
{
    public volatile bool FailWrites;

    public long Size => below.Size;
    public TargetCapabilities Capabilities => below.Capabilities;

    private void Check()
    {
        if (FailWrites) BlockThrow.Error(BlockError.Io, "injected I/O error (FaultyTarget)");
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        below.ReadAsync(offset, destination, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        Check();
        return below.WriteAsync(offset, data, fua, cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        Check();
        return below.FlushAsync(cancellationToken);
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        Check();
        return below.TrimAsync(offset, length, fua, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        Check();
        return below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken);
    }

    public ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents, CancellationToken cancellationToken = default) =>
        below.GetAllocationAsync(offset, length, extents, cancellationToken);

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        below.PrefetchAsync(offset, length, cancellationToken);

    public ValueTask DisposeAsync() => below.DisposeAsync();
}
