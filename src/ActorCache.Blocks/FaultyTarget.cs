namespace ActorCache.Blocks;

/// <summary>
/// A fault-injecting target for tests (DESIGN §1): while <see cref="FailWrites"/> is set, every write,
/// trim, zero and flush fails with EIO, the way a dying disk does; reads keep working.
/// </summary>
public sealed class FaultyTarget(IBlockTarget below) : ForwardingTarget(below)
{
    public volatile bool FailWrites;

    private void Check()
    {
        if (FailWrites) BlockThrow.Error(BlockError.Io, "injected I/O error (FaultyTarget)");
    }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        Check();
        return Below.WriteAsync(offset, data, fua, cancellationToken);
    }

    public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        Check();
        return Below.FlushAsync(cancellationToken);
    }

    public override ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        Check();
        return Below.TrimAsync(offset, length, fua, cancellationToken);
    }

    public override ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        Check();
        return Below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken);
    }

    /// <summary>A failing disk fails the final flush of a close too.</summary>
    public override async ValueTask<CloseReport> CloseAsync()
    {
        if (!FailWrites) return await Below.CloseAsync().ConfigureAwait(false);
        await Below.DisposeAsync().ConfigureAwait(false);
        return new CloseReport(CloseReport.UnknownBytes, "the final flush failed: injected I/O error (FaultyTarget)");
    }

    public override ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        if (FailWrites)
        {
            Below.AbandonStagedWrite(staged);
            Check();
        }
        return Below.CommitStagedWriteAsync(staged, fua, cancellationToken);
    }
}
