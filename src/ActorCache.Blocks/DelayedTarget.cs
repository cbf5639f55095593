namespace ActorCache.Blocks;

/// <summary>
/// A test and benchmark aid: passes everything through to the target below but makes every write,
/// trim, zero and flush take at least <c>delay</c>, the way a slow disk would.
/// </summary>
public sealed class DelayedTarget(IBlockTarget below, TimeSpan delay) : ForwardingTarget(below)
{
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await Below.WriteAsync(offset, data, fua, cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await Below.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await Below.TrimAsync(offset, length, fua, cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await Below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A staged write is a write too: it pays the delay when committed.</summary>
    public override async ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        await Below.CommitStagedWriteAsync(staged, fua, cancellationToken).ConfigureAwait(false);
    }
}
