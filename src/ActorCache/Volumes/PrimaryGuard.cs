using ActorCache.Blocks;

namespace ActorCache.Volumes;

/// <summary>
/// What the primary of a replicated volume checks around writes (DESIGN §4):
/// <list type="bullet">
/// <item>Quorum: with three or more replicas it must reach a majority of them, itself included.
/// <see cref="QuorumLost"/> says why not (null: quorum held, or none needed); without it writes and FLUSH
/// fail with EIO or wait (<see cref="Suspends"/>), so the two sides of a cut never both keep writing.</item>
/// <item>Unshared writes: a FLUSH or FUA completed while some peer lacks data leaves a durable mark
/// (<c>markUnshared</c>) before it is acknowledged. A node with that mark that meets a newer primary has
/// acknowledged writes the other may lack: split brain, detected instead of resynced over.</item>
/// </list>
/// The checks asked with <c>fresh</c> (FLUSH, FUA: they promise durability) look at the links now; others
/// may answer from a look a moment old.
/// </summary>
public sealed class PrimaryGuard(Func<bool, string?> quorumLost, bool suspends, Func<bool> peersLackData, Action markUnshared, Func<bool>? lagging = null,
    TimeSpan? lagWait = null)
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    // Set on the guard of a replica that is not (or not yet) its volume's serving primary: see NotPrimary.
    private readonly string? _notPrimary;

    private PrimaryGuard(string notPrimary) : this(_ => null, suspends: false, () => false, () => { }) => _notPrimary = notPrimary;

    /// <summary>
    /// The guard of a replica that is not its volume's serving primary (a secondary, a primary its peers have not confirmed yet, a
    /// primary that adopted a newer set naming another node): every write fails with EIO and <paramref name="reason"/>. Its NBD
    /// clients are disconnected when it loses the role; this holds should one still hold the volume, since a write here would be
    /// acknowledged and then resynced away by the real primary. A FLUSH passes: it promises nothing new, and snapshots of a
    /// secondary flush through it.
    /// </summary>
    public static PrimaryGuard NotPrimary(string reason) => new(reason);

    /// <summary>False for the guard of a replica that is not its volume's primary (<see cref="NotPrimary"/>).</summary>
    public bool GuardsPrimary => _notPrimary is null;

    /// <summary>Why this replica takes no writes (<see cref="NotPrimary"/>), or null on a primary.</summary>
    public string? NotPrimaryReason => _notPrimary;

    /// <summary>How long io-error waits for quorum before it fails a request (links connecting after a promotion or restart).</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(3);

    /// <summary>Suspend I/O until quorum is back (on-no-quorum = suspend-io) instead of failing it with EIO (io-error).</summary>
    public bool Suspends { get; } = suspends;

    public string? QuorumLost(bool fresh) => quorumLost(fresh);

    /// <summary>
    /// Returns at once while quorum holds; without it throws EIO, or waits for it under suspend-io. A fresh
    /// pass also marks unshared writes; one before a write waits while a peer lags far behind (back-pressure).
    /// </summary>
    public ValueTask PassAsync(string volume, bool fresh, CancellationToken cancellationToken)
    {
        if (_notPrimary is not null)
        {
            // Writes check before they are taken (fresh: false); the check after a FUA write or a FLUSH has nothing to refuse.
            if (fresh) return ValueTask.CompletedTask;
            throw new BlockTargetException(BlockError.Io, $"volume {volume} takes no writes on this node: {_notPrimary}");
        }
        if (quorumLost(fresh) is not null) return WaitAsync(volume, fresh, cancellationToken);
        if (fresh && peersLackData()) markUnshared();
        if (!fresh && lagging is not null && lagging()) return WaitForPeersAsync(cancellationToken);
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Whether writes wait for a peer: back-pressure before its link must give up on it (a link drops a peer that passes
    /// <paramref name="maxLag"/>). Writes accepted and not yet logged (<paramref name="unloggedBytes"/>) count too: every one
    /// of them reaches each link as a frame once the flusher logs it, and the ring holds up to its size of them (without
    /// them, sustained 1 MiB writes passed the check and dropped the peers). Only for a link that holds frames: one whose
    /// peer is away holds none and ships nothing, and must not slow writes.
    /// </summary>
    public static bool PeerLags(long heldBytes, long unloggedBytes, long maxLag) => heldBytes > 0 && heldBytes + unloggedBytes > maxLag * 3 / 4;

    /// <summary>Back-pressure: a write waits while a peer's link holds most of what it may (at most <c>lagWait</c>: a peer that stays stuck is the link's to drop).</summary>
    private async ValueTask WaitForPeersAsync(CancellationToken cancellationToken)
    {
        var until = Environment.TickCount64 + (long)(lagWait ?? TimeSpan.FromSeconds(5)).TotalMilliseconds;
        while (lagging!() && Environment.TickCount64 < until) await Task.Delay(1, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask WaitAsync(string volume, bool fresh, CancellationToken cancellationToken)
    {
        var until = Environment.TickCount64 + (long)Grace.TotalMilliseconds;
        while (quorumLost(true) is { } reason)
        {
            if (!Suspends && Environment.TickCount64 >= until) throw new BlockTargetException(BlockError.Io, $"volume {volume} has no quorum: {reason}");
            await Task.Delay(Poll, cancellationToken).ConfigureAwait(false);
        }
        if (fresh && peersLackData()) markUnshared();
    }
}
