using System.Diagnostics;
using ActorCache.Blocks;
using ActorCache.Volumes;

namespace ActorCache.Tests;

/// <summary>
/// The primary's back-pressure (protocol A's bound on how far a peer may lag): when a write waits for a peer, for how
/// long, and that the check after a FLUSH or FUA never waits for it; and the quorum check's EIO.
/// </summary>
public sealed class PrimaryGuardTests
{
    private const long MaxLag = 256L << 20;

    [Fact]
    public void Writes_wait_once_what_a_link_holds_and_what_is_not_logged_yet_pass_three_quarters_of_max_lag()
    {
        Assert.False(PrimaryGuard.PeerLags(100L << 20, 0, MaxLag));
        Assert.False(PrimaryGuard.PeerLags(192L << 20, 0, MaxLag)); // exactly three quarters
        Assert.True(PrimaryGuard.PeerLags((192L << 20) + 1, 0, MaxLag));
        // Writes in the ring are frames on every link soon: a link at 100 MiB with 100 MiB not logged yet lags.
        Assert.True(PrimaryGuard.PeerLags(100L << 20, 100L << 20, MaxLag));
    }

    [Fact]
    public void A_link_that_holds_nothing_never_slows_writes()
    {
        // Its peer is away (it ships nothing and marks the bitmap instead), however much is waiting to be logged.
        Assert.False(PrimaryGuard.PeerLags(0, 1L << 40, MaxLag));
    }

    [Fact]
    public async Task A_write_waits_while_a_peer_lags_and_goes_on_when_it_catches_up()
    {
        var lags = true;
        var guard = new PrimaryGuard(_ => null, suspends: false, () => false, () => { }, () => Volatile.Read(ref lags), TimeSpan.FromSeconds(30));
        var write = guard.PassAsync("v", fresh: false, CancellationToken.None).AsTask();
        await Task.Delay(200);
        Assert.False(write.IsCompleted, "a write passed while its peer lagged");

        // The check after a FLUSH or FUA (fresh) does not wait for a lagging peer (a FUA write waits before it is written, as
        // every write does).
        var flush = guard.PassAsync("v", fresh: true, CancellationToken.None).AsTask();
        Assert.True(flush.IsCompletedSuccessfully);

        Volatile.Write(ref lags, false);
        Assert.Same(write, await Task.WhenAny(write, Task.Delay(TimeSpan.FromSeconds(10))));
        await write;
    }

    [Fact]
    public async Task A_write_waits_at_most_lag_wait_for_a_peer_that_stays_stuck()
    {
        // The link drops a peer that stays silent; the writes go on then, and the peer is resynced.
        var guard = new PrimaryGuard(_ => null, suspends: false, () => false, () => { }, () => true, TimeSpan.FromMilliseconds(300));
        var clock = Stopwatch.StartNew();
        await guard.PassAsync("v", fresh: false, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(290), $"the write waited only {clock.Elapsed.TotalMilliseconds} ms");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"the write waited {clock.Elapsed.TotalMilliseconds} ms, not the 300 ms it was given");
    }

    [Fact]
    public async Task Without_quorum_and_suspend_io_off_a_write_fails_with_eio_naming_why()
    {
        var guard = new PrimaryGuard(_ => "it reaches 1 of its 3 replicas", suspends: false, () => false, () => { });
        var error = await Assert.ThrowsAsync<BlockTargetException>(() => guard.PassAsync("v", fresh: false, CancellationToken.None).AsTask()
            .WaitAsync(PrimaryGuard.Grace + TimeSpan.FromSeconds(10)));
        Assert.Equal(BlockError.Io, error.Error);
        Assert.Contains("volume v has no quorum: it reaches 1 of its 3 replicas", error.Message);
    }
}
