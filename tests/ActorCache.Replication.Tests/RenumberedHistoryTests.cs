using ActorCache.Cache;
using Xunit.Abstractions;

namespace ActorCache.Replication.Tests;

/// <summary>
/// A primary that loses power loses batches it had shipped, and numbers new ones as it numbered those: a resync narrowed
/// by the logs must not take two replicas' "batch K" for the same data (found by a review, reproduced here).
/// </summary>
public sealed class RenumberedHistoryTests(ITestOutputHelper output)
{
    /// <summary>
    /// A ships to B and C; then it ships batches X to both and loses power before syncing them, so it restarts (as primary)
    /// numbering new batches Y as it numbered X. C is cut off the whole time after X; B is resynced by the restarted A
    /// (its link's bitmap left dirty, as a crash leaves it) and follows Y. Returns with A's links closed, B and C not following.
    /// </summary>
    private async Task<(TestReplica A, TestReplica B, TestReplica C)> RenumberAsync(ReplicaFixture f)
    {
        var (a, b, c, toB, toC) = await TestReplica.StartThreeAsync(f);
        var random = new Random(3);
        var early = new HashSet<long>();
        await a.WriteAsync(random, early, 50, seed: 1);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything && toC.HoldsEverything, TimeSpan.FromSeconds(30), () => "");

        // What A's disk will hold after its power loss: its state now (closed cleanly to copy it, then reopened).
        await toB.DisposeAsync();
        await toC.DisposeAsync();
        await f.Primary.DisposeAsync();
        CopyDirectory(Path.Combine(f.Directory, "primary"), Path.Combine(f.Directory, "primary-at-loss"));
        a.Cache = f.OpenCache("primary");
        var before = a.Cache.Barrier.Local.DurableSequence;
        toB = a.LinkTo(b);
        toC = a.LinkTo(c);
        toB.Start();
        toC.Start();
        await TestReplica.WaitInSyncAsync(toB);
        await TestReplica.WaitInSyncAsync(toC);

        // X: shipped to B and C (durable there), then lost by A's power loss (not synced on A).
        var x = new HashSet<long>();
        await a.WriteAsync(random, x, 30, seed: 100, flushEach: true);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything && toC.HoldsEverything, TimeSpan.FromSeconds(30), () => "");
        await Task.Delay(1100);
        await a.WriteAsync(random, x, 1, seed: 200);
        var lastX = a.Cache.Barrier.Local.DurableSequence;
        await ReplicaFixture.WaitUntilAsync(() => ReplicaState.Read(c.State) is { } s && s.AppliedSequence >= lastX && s.Checkpoints.Count > 0 && s.Checkpoints[^1].PrimarySequence >= lastX,
            TimeSpan.FromSeconds(10), () => $"C: {ReplicaState.Read(c.State)}");
        output.WriteLine($"A's batches {before + 1}..{lastX} (X) reached B and C; C's state: applied {ReplicaState.Read(c.State)!.AppliedSequence}, last checkpoint {ReplicaState.Read(c.State)!.Checkpoints[^1]}");

        // A loses power: the batches of X are gone from its disk; it restarts as primary and renumbers.
        await toB.DisposeAsync();
        await toC.DisposeAsync();
        await a.Cache.DisposeAsync();
        Directory.Delete(Path.Combine(f.Directory, "primary"), recursive: true);
        Directory.Move(Path.Combine(f.Directory, "primary-at-loss"), Path.Combine(f.Directory, "primary"));
        a.Cache = f.OpenCache("primary");
        ReplicaHistory.RecordOpen(a.State, a.Cache.Recovery.NextSequence - 1);
        output.WriteLine($"A reopened: recovered through batch {a.Cache.Recovery.NextSequence - 1}");
        Assert.Equal(before, a.Cache.Recovery.NextSequence - 1);

        // C is cut off. B is resynced by the restarted A (a crash leaves the link's bitmap dirty), then follows A's new batches.
        var linkState = Path.Combine(a.State, "peer-b");
        var bm = new OutOfSyncBitmap(TestReplica.Blocks);
        var saved = bm.Load(linkState)!.Value;
        bm.Save(linkState, saved with { Flags = saved.Flags | OutOfSyncBitmap.FileFlags.Dirty });
        var toB2 = a.LinkTo(b);
        toB2.Start();
        await TestReplica.WaitInSyncAsync(toB2);
        var y = new HashSet<long>();
        for (var round = 0; round < 10; round++)
        {
            await a.WriteAsync(random, y, 6, seed: 1000 + 10 * round, flushEach: true);
            await Task.Delay(1100);
        }
        await a.WriteAsync(random, y, 1, seed: 5000);
        await ReplicaFixture.WaitUntilAsync(() => toB2.HoldsEverything, TimeSpan.FromSeconds(30), () => $"{toB2.Status}");
        await Task.Delay(1100);
        output.WriteLine($"B's checkpoints: {string.Join(", ", ReplicaState.Read(b.State)!.Checkpoints)}");
        await toB2.DisposeAsync();
        await b.StopFollowingAsync();
        await c.StopFollowingAsync();
        return (a, b, c);
    }

    [Fact]
    public async Task Renumbered_primary_batches_make_two_peers_agree_on_a_batch_they_hold_differently()
    {
        await using var f = new ReplicaFixture();
        var (a, b, c) = await RenumberAsync(f);
        await using var _ = c;

        // A dies for good; B is promoted and resyncs C: C followed another incarnation of A, so nothing narrows it.
        var basis = b.Followed!;
        output.WriteLine($"basis {basis}");
        c.Follow();
        var bToC = b.LinkTo(c);
        bToC.MarkAllOutOfSync(basis);
        bToC.Start();
        await TestReplica.WaitInSyncAsync(bToC);
        var differing = await TestReplica.DifferingBlocksAsync(b, c);
        output.WriteLine($"blocks differing between the new primary B and C after the resync: {differing}");
        await bToC.DisposeAsync();
        await CloseAsync(f, a, b);
        Assert.Equal(0, differing);
    }

    [Fact]
    public async Task A_repromoted_primary_compares_its_own_history_no_later_than_its_floor()
    {
        await using var f = new ReplicaFixture();
        var (a, b, c) = await RenumberAsync(f);
        await using var _ = c;

        // A is demoted cleanly and promoted again (C still away): its basis is its own volume at its durable batch, as a
        // clean demotion records it (no incarnation).
        var basis = new HistoryBasis(a.Cache.VolumeId, Guid.Empty, a.Cache.Barrier.Local.DurableSequence);
        output.WriteLine($"basis {basis}; floor file: {File.ReadAllText(Path.Combine(a.State, ReplicaHistory.FloorFile))}");
        c.Follow();
        var aToC = a.LinkTo(c);
        aToC.MarkAllOutOfSync(basis);
        aToC.Start();
        await TestReplica.WaitInSyncAsync(aToC);
        var differing = await TestReplica.DifferingBlocksAsync(a, c);
        output.WriteLine($"blocks differing between A and C after the narrowed resync: {differing}");
        await aToC.DisposeAsync();
        await CloseAsync(f, a, b);
        Assert.Equal(0, differing);
    }

    private static async Task CloseAsync(ReplicaFixture f, TestReplica a, TestReplica b)
    {
        if (a.Receiver is not null) await a.Receiver.DisposeAsync();
        if (b.Receiver is not null) await b.Receiver.DisposeAsync();
        if (!ReferenceEquals(a.Cache, f.Primary)) await a.Cache.DisposeAsync();
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var dir in Directory.GetDirectories(from)) CopyDirectory(dir, Path.Combine(to, Path.GetFileName(dir)));
    }
}
