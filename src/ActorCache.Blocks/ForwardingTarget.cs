namespace ActorCache.Blocks;

/// <summary>
/// The base of every layer that only adds behaviour to the one below it (DESIGN §1): every member,
/// the optional capabilities included (reads without waiting, staged writes, allocation, prefetch,
/// control messages and status), passes down unchanged unless the layer overrides it. Without it, a
/// decorator would silently switch off what it does not know about.
/// </summary>
public abstract class ForwardingTarget(IBlockTarget below) : IBlockTarget
{
    /// <summary>The layer this one stacks on.</summary>
    protected IBlockTarget Below { get; } = below;

    public virtual long Size => Below.Size;

    public virtual TargetCapabilities Capabilities => Below.Capabilities;

    public virtual ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        Below.ReadAsync(offset, destination, cancellationToken);

    public virtual ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) =>
        Below.WriteAsync(offset, data, fua, cancellationToken);

    public virtual ValueTask FlushAsync(CancellationToken cancellationToken = default) => Below.FlushAsync(cancellationToken);

    public virtual ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) =>
        Below.TrimAsync(offset, length, fua, cancellationToken);

    public virtual ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default) =>
        Below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken);

    public virtual ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents,
        CancellationToken cancellationToken = default) =>
        Below.GetAllocationAsync(offset, length, extents, cancellationToken);

    public virtual ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        Below.PrefetchAsync(offset, length, cancellationToken);

    public virtual bool TryReadWithoutWaiting(long offset, Span<byte> destination) => Below.TryReadWithoutWaiting(offset, destination);

    public virtual bool FlushesWithoutBlocking => Below.FlushesWithoutBlocking;

    public virtual ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default) =>
        Below.TryStageWriteAsync(offset, length, staged, cancellationToken);

    public virtual ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default) =>
        Below.CommitStagedWriteAsync(staged, fua, cancellationToken);

    public virtual void AbandonStagedWrite(StagedWrite staged) => Below.AbandonStagedWrite(staged);

    public virtual ValueTask<bool> TrySendAsync(TargetMessage message, CancellationToken cancellationToken = default) =>
        Below.TrySendAsync(message, cancellationToken);

    public virtual void CollectStatus(TargetStatus status) => Below.CollectStatus(status);

    public virtual ValueTask<CloseReport> CloseAsync() => Below.CloseAsync();

    public virtual ValueTask DisposeAsync() => Below.DisposeAsync();
}
