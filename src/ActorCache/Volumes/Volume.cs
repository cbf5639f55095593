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

    /// <summary>Read and write requests since the volume was opened (every front enters the stack here).</summary>
    public VolumeIoCounters Io { get; } = new();

    public override long Size => Definition.Size;

    /// <summary>The target below the volume layer (the write-back cache, or the backing): a secondary's replication applies there.</summary>
    public IBlockTarget Stack => Below;

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
        if (mode == Definition.Mode) return;
        if (LiveSwitchRefusal(Definition, mode) is { } refusal) throw new InvalidOperationException(refusal);
        if (!await Below.TrySendAsync(new SetCacheMode(VolumeStack.CacheModeOf(mode))).ConfigureAwait(false))
            throw new InvalidOperationException(PassThroughRefusal(Definition.Name));
        Definition = Definition with { Mode = mode };
    }

    /// <summary>Why a volume defined as <paramref name="definition"/> cannot switch to <paramref name="mode"/> while it runs, or null.</summary>
    public static string? LiveSwitchRefusal(VolumeDefinition definition, VolumeMode mode) =>
        mode == definition.Mode ? null
        : mode == VolumeMode.PassThrough || definition.Mode == VolumeMode.PassThrough ? PassThroughRefusal(definition.Name)
        : definition.ReadOnly ? $"volume {definition.Name} is read-only: it has no cache to switch"
        // Replication ships the write-back log, and a resync after a failover reads its history: a gap in it would go unseen.
        : definition.Replicas is not null ? $"volume {definition.Name} is replicated: it stays write-back (replication ships its log)"
        : null;

    private static string PassThroughRefusal(string name) =>
        $"volume {name}: switching between pass-through and the cached modes needs a restart (serve --volume NAME:SIZE:MODE); " +
        "live switching works between write-back and write-through";

    /// <summary>
    /// Grows the live volume to <paramref name="size"/> bytes in an order a crash cannot break: first
    /// the layers below (the backing file is extended and its length synced, a cache's index covers the
    /// new blocks), then <paramref name="record"/> (the registry persists the size), and only then is
    /// the new size the one new connections negotiate. So a restart never finds a recorded size the
    /// backing does not hold, and nobody writes past the old end before the new size is recorded.
    /// Clients connected already keep the size they negotiated until they reconnect.
    /// </summary>
    public async Task GrowAsync(long size, Func<Task> record)
    {
        if (size < Definition.Size)
            throw new InvalidOperationException($"volume {Definition.Name} is {ByteSize.Format(Definition.Size)}; shrinking is refused (it would cut off data)");
        if (size == Definition.Size) return;
        if (Definition.ReadOnly) throw new InvalidOperationException($"volume {Definition.Name} is read-only; a read-only volume cannot grow");
        // Every replica, and each link's out-of-sync bitmap (sized when the link starts), would have to grow together: a primary
        // grown alone marks nothing past the old end for a peer that is away, and resyncs it as UpToDate without those writes.
        if (Definition.Replicas is not null)
            throw new InvalidOperationException($"volume {Definition.Name} is replicated; a replicated volume cannot grow (its replicas and their " +
                                                "out-of-sync bitmaps do not grow together): create a larger one and copy the data over");
        if (!await Below.TrySendAsync(new GrowTarget(size)).ConfigureAwait(false))
            throw new InvalidOperationException($"volume {Definition.Name}: its stack cannot grow");
        await record().ConfigureAwait(false);
        Definition = Definition with { Size = size };
    }

    public override ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        Io.CountRead(destination.Length);
        return Below.ReadAsync(offset, destination, cancellationToken);
    }

    /// <summary>A read answered from memory counts here; one that cannot be (false) comes back through <see cref="ReadAsync"/> and counts there.</summary>
    public override bool TryReadWithoutWaiting(long offset, Span<byte> destination)
    {
        if (!Below.TryReadWithoutWaiting(offset, destination)) return false;
        Io.CountRead(destination.Length);
        return true;
    }

    /// <summary>
    /// Set on the primary of a replicated volume (DESIGN §4): quorum around writes and FLUSH, and the mark
    /// of FLUSHes acknowledged while a peer lacked data (see <see cref="PrimaryGuard"/>). Null for every
    /// other volume (no cost).
    /// </summary>
    public PrimaryGuard? Guard { get; set; }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        if (Guard is { } quorum) return FencedWriteAsync(quorum, offset, data, fua, cancellationToken);
        Io.CountWrite(data.Length);
        return Below.WriteAsync(offset, data, fua, cancellationToken);
    }

    private async ValueTask FencedWriteAsync(PrimaryGuard quorum, long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        await quorum.PassAsync(Definition.Name, fresh: false, cancellationToken).ConfigureAwait(false);
        Io.CountWrite(data.Length);
        await Below.WriteAsync(offset, data, fua, cancellationToken).ConfigureAwait(false);
        if (fua) await quorum.PassAsync(Definition.Name, fresh: true, cancellationToken).ConfigureAwait(false);
    }

    public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        // Only a volume defined read-only has no writes to make durable: one that turned read-only while serving (the scrub found a
        // damaged record) may still hold acknowledged writes on their way to the log, and a FLUSH must wait for them.
        if (Definition.ReadOnly) return ValueTask.CompletedTask;
        return Guard is { } quorum ? FencedFlushAsync(quorum, cancellationToken) : Below.FlushAsync(cancellationToken);
    }

    /// <summary>A FLUSH that completed while the volume lost quorum is not reported done: it may be durable on this side of a cut alone.</summary>
    private async ValueTask FencedFlushAsync(PrimaryGuard quorum, CancellationToken cancellationToken)
    {
        await Below.FlushAsync(cancellationToken).ConfigureAwait(false);
        await quorum.PassAsync(Definition.Name, fresh: true, cancellationToken).ConfigureAwait(false);
    }

    public override ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        if (Guard is { } quorum) return FencedAsync(quorum, Below.TrimAsync, offset, length, fua, cancellationToken);
        return Below.TrimAsync(offset, length, fua, cancellationToken);
    }

    private async ValueTask FencedAsync(PrimaryGuard quorum, Func<long, long, bool, CancellationToken, ValueTask> change, long offset, long length, bool fua,
        CancellationToken cancellationToken)
    {
        await quorum.PassAsync(Definition.Name, fresh: false, cancellationToken).ConfigureAwait(false);
        await change(offset, length, fua, cancellationToken).ConfigureAwait(false);
        if (fua) await quorum.PassAsync(Definition.Name, fresh: true, cancellationToken).ConfigureAwait(false);
    }

    public override ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        if (Guard is { } quorum)
            return FencedAsync(quorum, (o, l, f, ct) => Below.WriteZeroesAsync(o, l, mayDeallocate, fastOnly, f, ct), offset, length, fua, cancellationToken);
        return Below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken);
    }

    public override ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default)
    {
        if (Definition.ReadOnly) ThrowReadOnly();
        if (Guard is { } quorum) return FencedStageAsync(quorum, offset, length, staged, cancellationToken);
        return Below.TryStageWriteAsync(offset, length, staged, cancellationToken);
    }

    private async ValueTask<bool> FencedStageAsync(PrimaryGuard quorum, long offset, int length, StagedWrite staged, CancellationToken cancellationToken)
    {
        await quorum.PassAsync(Definition.Name, fresh: false, cancellationToken).ConfigureAwait(false);
        return await Below.TryStageWriteAsync(offset, length, staged, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A write staged into ring slots counts once it is committed (a staged write that is abandoned was never written).</summary>
    public override ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        Io.CountWrite(staged.Length);
        if (fua && Guard is { } quorum) return FencedCommitAsync(quorum, staged, cancellationToken);
        return Below.CommitStagedWriteAsync(staged, fua, cancellationToken);
    }

    private async ValueTask FencedCommitAsync(PrimaryGuard quorum, StagedWrite staged, CancellationToken cancellationToken)
    {
        await Below.CommitStagedWriteAsync(staged, fua: true, cancellationToken).ConfigureAwait(false);
        await quorum.PassAsync(Definition.Name, fresh: true, cancellationToken).ConfigureAwait(false);
    }

    private void ThrowReadOnly() =>
        BlockThrow.Error(BlockError.ReadOnly, $"volume {Definition.Name} is read-only");
}
