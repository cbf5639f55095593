using ActorCache.Cache;

namespace ActorCache.Replication.Tests;

/// <summary>
/// A failover with three real caches over loopback: primary A ships to B and C; C misses A's last batches, A keeps
/// some B never got, A goes away and B is promoted. B's resync of C and of the former primary A is narrowed by the
/// logs (ReplicaHistory) to the blocks either side changed since the last batch of A both hold, and afterwards all
/// three hold exactly B's data.
/// </summary>
public sealed class FailoverResyncTests
{
    [Fact]
    public async Task After_a_failover_the_logs_narrow_the_resync_of_every_peer_to_what_differs()
    {
        await using var f = new ReplicaFixture(); // its Primary and Secondary caches are A and B
        // A ships to B and C; both are in sync and keep checkpoints of A's history.
        var (a, b, c, toB, toC) = await TestReplica.StartThreeAsync(f);
        await using var _ = c;
        var random = new Random(7);
        var early = new HashSet<long>();
        for (var round = 0; round < 3; round++)
        {
            await a.WriteAsync(random, early, 300, seed: 1000 * round);
            await Task.Delay(1100); // the replicas record a checkpoint at most once a second
        }
        await a.WriteAsync(random, early, 1, seed: 5000);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything && toC.HoldsEverything, TimeSpan.FromSeconds(30), () => $"{toB.Status} / {toC.Status}");
        await CheckpointAtNewestAsync(a, random, early, seed: 5001, b, c);

        // C misses A's next batches; then B misses A's last ones too (A's unshipped tail).
        toC.Disconnect();
        var missedByC = new HashSet<long>();
        await a.WriteAsync(random, missedByC, 40, seed: 6000);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything, TimeSpan.FromSeconds(30), () => $"{toB.Status}");
        toB.Disconnect();
        var unshipped = new HashSet<long>();
        await a.WriteAsync(random, unshipped, 20, seed: 7000);

        // A goes away (its cache reopens as a crashed node's would, recording its floor); B is promoted.
        await toB.DisposeAsync();
        await toC.DisposeAsync();
        var shipped = f.Primary.Incarnation;
        await f.Primary.DisposeAsync();
        a.Cache = f.OpenCache("primary");
        ReplicaHistory.RecordOpen(a.State, a.Cache.Recovery.NextSequence - 1);
        await b.StopFollowingAsync();
        await c.StopFollowingAsync();
        var followed = b.Followed ?? throw new InvalidOperationException("B never reported what it holds of A");
        Assert.Equal(a.Cache.VolumeId, followed.VolumeId);
        Assert.Equal(shipped, followed.Incarnation);
        var written = new HashSet<long>();
        await b.WriteAsync(random, written, 30, seed: 8000);

        // B's links to C and A start fully marked with the basis, as a promotion does; the connect narrows them.
        long resyncedC = 0, resyncedA = 0;
        c.Follow();
        a.Follow();
        var bToC = b.LinkTo(c, n => Interlocked.Add(ref resyncedC, n));
        var bToA = b.LinkTo(a, n => Interlocked.Add(ref resyncedA, n));
        bToC.MarkAllOutOfSync(followed);
        bToA.MarkAllOutOfSync(followed);
        bToC.Start();
        bToA.Start();
        await TestReplica.WaitInSyncAsync(bToC);
        await TestReplica.WaitInSyncAsync(bToA);

        var expectedC = new HashSet<long>(missedByC);
        expectedC.UnionWith(written);
        var expectedA = new HashSet<long>(unshipped);
        expectedA.UnionWith(written);
        Assert.InRange(Interlocked.Read(ref resyncedC), expectedC.Count, expectedC.Count + 320); // at most one checkpoint interval more
        Assert.InRange(Interlocked.Read(ref resyncedA), expectedA.Count, expectedA.Count + 320);

        var content = await ReplicaFixture.ReadAllAsync(b.Cache);
        var atC = await ReplicaFixture.ReadAllAsync(c.Cache);
        var atA = await ReplicaFixture.ReadAllAsync(a.Cache);
        Assert.True(content.AsSpan().SequenceEqual(atC), "C differs from the new primary after the narrowed resync");
        Assert.True(content.AsSpan().SequenceEqual(atA), "A differs from the new primary after the narrowed resync");
        Assert.False(File.Exists(Path.Combine(b.State, "peer-c", "history-basis")), "the basis stays after the peer is in sync");

        await bToC.DisposeAsync();
        await bToA.DisposeAsync();
        if (a.Receiver is not null) await a.Receiver.DisposeAsync();
        if (b.Receiver is not null) await b.Receiver.DisposeAsync();
        if (!ReferenceEquals(a.Cache, f.Primary)) await a.Cache.DisposeAsync();
    }

    [Fact]
    public async Task A_primary_restarted_after_a_crash_narrows_its_peers_resync_by_the_logs()
    {
        await using var f = new ReplicaFixture();
        var a = new TestReplica("a", f.Primary, Path.Combine(f.Directory, "a-state"));
        var b = new TestReplica("b", f.Secondary, Path.Combine(f.Directory, "b-state"));
        var random = new Random(11);
        var early = new HashSet<long>();
        b.Follow();
        var toB = a.LinkTo(b);
        toB.Start();
        await TestReplica.WaitInSyncAsync(toB);
        await a.WriteAsync(random, early, 300, seed: 1);
        await CheckpointAtNewestAsync(a, random, early, seed: 2, b);

        // B misses A's last batches; then A "crashes": its link's bitmap is left as a start leaves it (dirty), with a block
        // marked before (as a verify would) that the logs know nothing of.
        toB.Disconnect();
        var unshipped = new HashSet<long>();
        await a.WriteAsync(random, unshipped, 25, seed: 3);
        await toB.DisposeAsync();
        var linkState = Path.Combine(a.State, "peer-b");
        var saved = new OutOfSyncBitmap(TestReplica.Blocks);
        saved.Set(2000, 4);
        saved.Save(linkState, new OutOfSyncBitmap.Saved(OutOfSyncBitmap.FileFlags.Dirty | OutOfSyncBitmap.FileFlags.PeerSeen, a.Cache.VolumeId, 1));

        long resynced = 0;
        var again = a.LinkTo(b, n => Interlocked.Add(ref resynced, n));
        again.Start();
        await TestReplica.WaitInSyncAsync(again);
        var expected = new HashSet<long>(unshipped) { 2000, 2001, 2002, 2003 };
        Assert.InRange(Interlocked.Read(ref resynced), expected.Count, expected.Count + 320);
        var atA = await ReplicaFixture.ReadAllAsync(a.Cache);
        var atB = await ReplicaFixture.ReadAllAsync(b.Cache);
        Assert.True(atA.AsSpan().SequenceEqual(atB), "B differs from the restarted primary after the narrowed resync");
        await again.DisposeAsync();
        if (b.Receiver is not null) await b.Receiver.DisposeAsync();
    }

    /// <summary>
    /// Writes one block on <paramref name="a"/> a second after the last checkpoint, until every replica has a checkpoint at A's newest
    /// batch: the narrowed resyncs are bounded by one checkpoint interval, and on a loaded machine a replica's checkpoint of the
    /// previous batch can land late enough that the next batch comes within its second and gets none.
    /// </summary>
    private static async Task CheckpointAtNewestAsync(TestReplica a, Random random, HashSet<long> written, int seed, params TestReplica[] replicas)
    {
        for (var attempt = 0; attempt < 10; attempt++)
        {
            await Task.Delay(1100); // the replicas record a checkpoint at most once a second
            await a.WriteAsync(random, written, 1, seed: seed + 1000 * attempt);
            var newest = a.Cache.Barrier.Local.DurableSequence;
            for (var waited = System.Diagnostics.Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromSeconds(10); await Task.Delay(50))
                if (replicas.All(r => ReplicaState.Read(r.State) is { Checkpoints.Count: > 0 } state && state.Checkpoints[^1].PrimarySequence >= newest))
                    return;
        }
        throw new Xunit.Sdk.XunitException("no checkpoint at A's newest batch on every replica after 10 tries: " +
                                           string.Join(", ", replicas.Select(r => $"{r.Name}: {ReplicaState.Read(r.State)}")));
    }
}
