namespace ActorCache.Blocks;

/// <summary>
/// A test and benchmark aid: passes everything through to the target below but makes every write,
/// trim, zero and flush take at least <c>delay</c>, the way a slow disk would.
/// </summary>
public sealed class DelayedTarget(IBlockTarget below, TimeSpan delay) : IBlockTarget
{
    public long Size => below.Size;
    public TargetCapabilities Capabilities => below.Capabilities;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        below.ReadAsync(offset, destination, cancellationToken);

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await below.WriteAsync(offset, data, fua, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await below.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await below.TrimAsync(offset, length, fua, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken).ConfigureAwait(false);
    }

    public ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents, CancellationToken cancellationToken = default) =>
        below.GetAllocationAsync(offset, length, extents, cancellationToken);

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        below.PrefetchAsync(offset, length, cancellationToken);

    public ValueTask DisposeAsync() => below.DisposeAsync();
}
