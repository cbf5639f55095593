using ActorCache.Blocks;
using ActorCache.Cache;

namespace ActorCache.Volumes;

/// <summary>
/// The volume layer of the stack (DESIGN §1): the top target every front talks to. It holds the
/// volume's definition, refuses writes to a read-only volume, and knows only the target below it: the
/// mode, the generation and the statistics come from the stack through control messages and status.
/// </summary>
public sealed class Volume(VolumeDefinition definition, IBlockTarget below) : ForwardingTarget(below)
{
    public VolumeDefinition Definition { get; private set; } = definition;

    public override long Size => Definition.Size;

    /// <summary>Read-only by definition, or because a layer below refuses writes (a damaged log).</summary>
    public bool IsReadOnly => Definition.ReadOnly || (Below.Capabilities & TargetCapabilities.ReadOnly) != 0;

    public override TargetCapabilities Capabilities => Below.Capabilities | (IsReadOnly ? TargetCapabilities.ReadOnly : TargetCapabilities.None);

    /// <summary>What the stack says about itself now: each layer's status record, and why writes are refused, if they are.</summary>
    public TargetStatus Status()
    {
        var status = new TargetStatus();
        CollectStatus(status);
        return status;
    }

    /// <summary>Switches between write-back and write-through on the live volume (write-back drains first).</summary>
    public async Task SetModeAsync(VolumeMode mode)
    {
        if (mode == VolumeMode.PassThrough || Definition.Mode == VolumeMode.PassThrough ||
            !await Below.TrySendAsync(new SetCacheMode(VolumeStack.CacheModeOf(mode))).ConfigureAwait(false))
            throw new InvalidOperationException(
                $"volume {Definition.Name}: switching between pass-through and the cached modes needs a restart; live switching works between write-back and write-through");
        Definition = Definition with { Mode = mode };
    }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return Below.WriteAsync(offset, data, fua, cancellationToken);
    }

    public override ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        IsReadOnly ? ValueTask.CompletedTask : Below.FlushAsync(cancellationToken);

    public override ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return Below.TrimAsync(offset, length, fua, cancellationToken);
    }

    public override ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return Below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken);
    }

    public override ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        return Below.TryStageWriteAsync(offset, length, staged, cancellationToken);
    }

    private void ThrowReadOnly() =>
        BlockThrow.Error(BlockError.ReadOnly, $"volume {Definition.Name} is read-only");
}
