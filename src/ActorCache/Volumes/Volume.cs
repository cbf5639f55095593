using ActorCache.Blocks;
using ActorCache.Cache;

namespace ActorCache.Volumes;

/// <summary>
/// The volume layer of the stack (DESIGN §1): the top target every front talks to. It holds the
/// volume's state and generation counter and routes to the stack below (for pass-through, the backing).
/// </summary>
public sealed class Volume(VolumeDefinition definition, IBlockTarget below, WriteBackCache? cache) : IBlockTarget
{
    private long _generation;

    public VolumeDefinition Definition { get; private set; } = definition;
    public long Size => Definition.Size;

    /// <summary>The cache layer, when the volume has one (write-back and write-through volumes).</summary>
    public WriteBackCache? Cache => cache;

    /// <summary>Read-only by definition, or because recovery found a corrupt log record.</summary>
    public bool IsReadOnly => Definition.ReadOnly || cache?.ReadOnlyReason is not null;

    public TargetCapabilities Capabilities =>
        below.Capabilities | (IsReadOnly ? TargetCapabilities.ReadOnly : TargetCapabilities.None);

    /// <summary>Switches between write-back and write-through on the live volume (write-back drains first).</summary>
    public async Task SetModeAsync(VolumeMode mode)
    {
        if (cache is null || mode == VolumeMode.PassThrough || Definition.Mode == VolumeMode.PassThrough)
            throw new InvalidOperationException(
                $"volume {Definition.Name}: switching between pass-through and the cached modes needs a restart; live switching works between write-back and write-through");
        await cache.SetModeAsync(VolumeStack.CacheModeOf(mode)).ConfigureAwait(false);
        Definition = Definition with { Mode = mode };
    }

    /// <summary>Completed FLUSH count: every completed FLUSH closes a generation.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        below.ReadAsync(offset, destination, cancellationToken);

    public bool TryReadWithoutWaiting(long offset, Span<byte> destination) => below.TryReadWithoutWaiting(offset, destination);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return below.WriteAsync(offset, data, fua, cancellationToken);
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (IsReadOnly) return;
        await below.FlushAsync(cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _generation);
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return below.TrimAsync(offset, length, fua, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken);
    }

    public ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents,
        CancellationToken cancellationToken = default) =>
        below.GetAllocationAsync(offset, length, extents, cancellationToken);

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        below.PrefetchAsync(offset, length, cancellationToken);

    public ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return below.TryStageWriteAsync(offset, length, staged, cancellationToken);
    }

    public ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default) =>
        below.CommitStagedWriteAsync(staged, fua, cancellationToken);

    public void AbandonStagedWrite(StagedWrite staged) => below.AbandonStagedWrite(staged);

    public ValueTask DisposeAsync() => below.DisposeAsync();

    private void ThrowReadOnly() =>
        BlockThrow.Error(BlockError.ReadOnly, $"volume {Definition.Name} is read-only");
}
