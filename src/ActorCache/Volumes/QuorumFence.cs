using ActorCache.Blocks;

namespace ActorCache.Volumes;

/// <summary>
/// Whether a replicated volume's primary may write (DESIGN §4, quorum): it must reach a majority of the
/// volume's replicas, itself included. <see cref="Lost"/> says why not (null: quorum held); it is asked
/// with <c>fresh</c> at FLUSH and FUA (those promise durability, so they must see the state of the links
/// now) and may answer from a recent look otherwise.
/// </summary>
public sealed class QuorumFence(Func<bool, string?> lost, bool suspends)
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    /// <summary>Suspend I/O until quorum is back (policy suspend-io) instead of failing it with EIO (io-error).</summary>
    public bool Suspends { get; } = suspends;

    public string? Lost(bool fresh) => lost(fresh);

    /// <summary>Returns at once while quorum holds; without it throws EIO, or waits for it under suspend-io.</summary>
    public ValueTask PassAsync(string volume, bool fresh, CancellationToken cancellationToken) =>
        lost(fresh) is null ? ValueTask.CompletedTask : WaitAsync(volume, cancellationToken);

    /// <summary>
    /// Waits for quorum: for ever under suspend-io; under io-error for <see cref="Grace"/> (links that are
    /// just connecting after a promotion or a restart, a peer reconnecting), then EIO.
    /// </summary>
    private async ValueTask WaitAsync(string volume, CancellationToken cancellationToken)
    {
        var until = Environment.TickCount64 + (long)Grace.TotalMilliseconds;
        while (lost(true) is { } reason)
        {
            if (!Suspends && Environment.TickCount64 >= until) throw new BlockTargetException(BlockError.Io, $"volume {volume} has no quorum: {reason}");
            await Task.Delay(Poll, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>How long io-error waits for quorum before it fails a request.</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(3);
}
