using System.Net;
using ActorCache.Cache;
using Xunit.Abstractions;

namespace ActorCache.Replication.Tests;

/// <summary>
/// A primary that loses power loses batches it had shipped, and numbers new ones as it numbered those: a resync narrowed
/// by the logs must not take two replicas' "batch K" for the same data (found by a review, reproduced here).
/// </summary>
public sealed class RenumberedHistoryTests(ITestOutputHelper output)
{
    private const int Blocks = (int)(ReplicaFixture.Size / 4096);

    private sealed class Replica(string name, WriteBackCache cache, string stateDirectory) : IAsyncDisposable
    {
        public string Name { get; } = name;
        public WriteBackCache Cache { get; set; } = cache;
        public string State { get; } = stateDirectory;
        public ReplicaSink? Sink { get; set; }
        public ReplicaReceiver? Receiver { get; set; }
        public volatile HistoryBasis? Followed;
        public ReplicaHistory History => new(Cache, State);

        public void Follow()
        {
            Sink = new ReplicaSink(Cache, State) { History = History, Durable = basis => Followed = basis };
            Receiver ??= ReplicaReceiver.Start(new IPEndPoint(IPAddress.Loopback, 0), volume => volume == "vol" ? Sink : null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        }

        public async Task StopFollowingAsync()
        {
            if (Sink is { } sink) await sink.RevokeAsync();
            Sink = null;
        }

        public async ValueTask DisposeAsync()
        {
            if (Receiver is not null) await Receiver.DisposeAsync();
            await Cache.DisposeAsync();
        }
    }

    private static ReplicaLink LinkTo(ReplicaFixture f, Replica from, Replica to) =>
        new(new ReplicaLinkOptions
        {
            Volume = "vol",
            PeerNode = to.Name,
            ResolvePeer = _ => ValueTask.FromResult<EndPoint?>(to.Receiver?.LocalEndpoint),
            StateDirectory = Path.Combine(from.State, "peer-" + to.Name),
            ReconnectInterval = TimeSpan.FromMilliseconds(100),
            History = from.History,
        }, from.Cache, f.Logger);

    private static async Task WriteAsync(WriteBackCache cache, Random random, HashSet<long> written, int count, int seed, bool flushEach = false)
    {
        for (var i = 0; i < count; i++)
        {
            var block = random.Next(0, Blocks);
            written.Add(block);
            await cache.WriteAsync(block * 4096L, ReplicaFixture.SelfChecking(block, 1, seed + i), fua: false);
            if (flushEach) await cache.FlushAsync();
        }
        await cache.FlushAsync();
    }

    private static async Task WaitInSyncAsync(ReplicaLink link) =>
        await ReplicaFixture.WaitUntilAsync(() => link.IsInSync, TimeSpan.FromSeconds(30), () => $"not in sync: {link.Status}");

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var dir in Directory.GetDirectories(from)) CopyDirectory(dir, Path.Combine(to, Path.GetFileName(dir)));
    }

    [Fact]
    public async Task Renumbered_primary_batches_make_two_peers_agree_on_a_batch_they_hold_differently()
    {
        await using var f = new ReplicaFixture();
        var a = new Replica("a", f.Primary, Path.Combine(f.Directory, "a-state"));
        var b = new Replica("b", f.Secondary, Path.Combine(f.Directory, "b-state"));
        await using var c = new Replica("c", f.OpenCache("c"), Path.Combine(f.Directory, "c-state"));
        var random = new Random(3);
        var early = new HashSet<long>();

        b.Follow();
        c.Follow();
        var toB = LinkTo(f, a, b);
        var toC = LinkTo(f, a, c);
        toB.Start();
        toC.Start();
        await WaitInSyncAsync(toB);
        await WaitInSyncAsync(toC);
        await WriteAsync(a.Cache, random, early, 50, seed: 1);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything && toC.HoldsEverything, TimeSpan.FromSeconds(30), () => "");

        // What A's disk will hold after its power loss: its state now (closed cleanly to copy it, then reopened).
        await toB.DisposeAsync();
        await toC.DisposeAsync();
        await f.Primary.DisposeAsync();
        CopyDirectory(Path.Combine(f.Directory, "primary"), Path.Combine(f.Directory, "primary-at-loss"));
        a.Cache = f.OpenCache("primary");
        var before = a.Cache.Barrier.Local.DurableSequence;
        toB = LinkTo(f, a, b);
        toC = LinkTo(f, a, c);
        toB.Start();
        toC.Start();
        await WaitInSyncAsync(toB);
        await WaitInSyncAsync(toC);

        // X: shipped to B and C (durable there), then lost by A's power loss (not synced on A).
        var x = new HashSet<long>();
        await WriteAsync(a.Cache, random, x, 30, seed: 100, flushEach: true);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything && toC.HoldsEverything, TimeSpan.FromSeconds(30), () => "");
        await Task.Delay(1100);
        await WriteAsync(a.Cache, random, x, 1, seed: 200);
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

        // C is cut off. B is resynced by the restarted A (in full, as a dirty bitmap would), then follows A's new batches.
        // A crash leaves the link's bitmap dirty (Start saves it so).
        var linkState = Path.Combine(a.State, "peer-b");
        var bm = new OutOfSyncBitmap(Blocks);
        var saved = bm.Load(linkState)!.Value;
        bm.Save(linkState, saved with { Flags = saved.Flags | OutOfSyncBitmap.FileFlags.Dirty });
        var toB2 = LinkTo(f, a, b);
        toB2.Start();
        await WaitInSyncAsync(toB2);
        var y = new HashSet<long>();
        for (var round = 0; round < 10; round++)
        {
            await WriteAsync(a.Cache, random, y, 6, seed: 1000 + 10 * round, flushEach: true);
            await Task.Delay(1100);
        }
        await WriteAsync(a.Cache, random, y, 1, seed: 5000);
        await ReplicaFixture.WaitUntilAsync(() => toB2.HoldsEverything, TimeSpan.FromSeconds(30), () => $"{toB2.Status}");
        await Task.Delay(1100);
        output.WriteLine($"B's checkpoints: {string.Join(", ", ReplicaState.Read(b.State)!.Checkpoints)}");

        // A dies for good; B is promoted and resyncs C, narrowed by the logs.
        await toB2.DisposeAsync();
        await b.StopFollowingAsync();
        await c.StopFollowingAsync();
        var basis = b.Followed!;
        output.WriteLine($"basis {basis}");
        c.Follow();
        var bToC = LinkTo(f, b, c);
        bToC.MarkAllOutOfSync(basis);
        bToC.Start();
        await WaitInSyncAsync(bToC);
        output.WriteLine($"C in sync with B: {bToC.Status}");

        var atB = await ReplicaFixture.ReadAllAsync(b.Cache);
        var atC = await ReplicaFixture.ReadAllAsync(c.Cache);
        var differing = Enumerable.Range(0, Blocks).Count(i => !atB.AsSpan(i * 4096, 4096).SequenceEqual(atC.AsSpan(i * 4096, 4096)));
        output.WriteLine($"blocks differing between the new primary B and C after the narrowed resync: {differing}");
        await bToC.DisposeAsync();
        if (a.Receiver is not null) await a.Receiver.DisposeAsync();
        if (b.Receiver is not null) await b.Receiver.DisposeAsync();
        if (!ReferenceEquals(a.Cache, f.Primary)) await a.Cache.DisposeAsync();
        Assert.Equal(0, differing);
    }
    [Fact]
    public async Task A_repromoted_primary_compares_its_own_history_past_its_floor()
    {
        await using var f = new ReplicaFixture();
        var a = new Replica("a", f.Primary, Path.Combine(f.Directory, "a-state"));
        var b = new Replica("b", f.Secondary, Path.Combine(f.Directory, "b-state"));
        await using var c = new Replica("c", f.OpenCache("c"), Path.Combine(f.Directory, "c-state"));
        var random = new Random(3);
        var early = new HashSet<long>();

        b.Follow();
        c.Follow();
        var toB = LinkTo(f, a, b);
        var toC = LinkTo(f, a, c);
        toB.Start();
        toC.Start();
        await WaitInSyncAsync(toB);
        await WaitInSyncAsync(toC);
        await WriteAsync(a.Cache, random, early, 50, seed: 1);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything && toC.HoldsEverything, TimeSpan.FromSeconds(30), () => "");

        // What A's disk will hold after its power loss: its state now (closed cleanly to copy it, then reopened).
        await toB.DisposeAsync();
        await toC.DisposeAsync();
        await f.Primary.DisposeAsync();
        CopyDirectory(Path.Combine(f.Directory, "primary"), Path.Combine(f.Directory, "primary-at-loss"));
        a.Cache = f.OpenCache("primary");
        var before = a.Cache.Barrier.Local.DurableSequence;
        toB = LinkTo(f, a, b);
        toC = LinkTo(f, a, c);
        toB.Start();
        toC.Start();
        await WaitInSyncAsync(toB);
        await WaitInSyncAsync(toC);

        // X: shipped to B and C (durable there), then lost by A's power loss (not synced on A).
        var x = new HashSet<long>();
        await WriteAsync(a.Cache, random, x, 30, seed: 100, flushEach: true);
        await ReplicaFixture.WaitUntilAsync(() => toB.HoldsEverything && toC.HoldsEverything, TimeSpan.FromSeconds(30), () => "");
        await Task.Delay(1100);
        await WriteAsync(a.Cache, random, x, 1, seed: 200);
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

        // C is cut off. B is resynced by the restarted A (in full, as a dirty bitmap would), then follows A's new batches.
        // A crash leaves the link's bitmap dirty (Start saves it so).
        var linkState = Path.Combine(a.State, "peer-b");
        var bm = new OutOfSyncBitmap(Blocks);
        var saved = bm.Load(linkState)!.Value;
        bm.Save(linkState, saved with { Flags = saved.Flags | OutOfSyncBitmap.FileFlags.Dirty });
        var toB2 = LinkTo(f, a, b);
        toB2.Start();
        await WaitInSyncAsync(toB2);
        var y = new HashSet<long>();
        for (var round = 0; round < 10; round++)
        {
            await WriteAsync(a.Cache, random, y, 6, seed: 1000 + 10 * round, flushEach: true);
            await Task.Delay(1100);
        }
        await WriteAsync(a.Cache, random, y, 1, seed: 5000);
        await ReplicaFixture.WaitUntilAsync(() => toB2.HoldsEverything, TimeSpan.FromSeconds(30), () => $"{toB2.Status}");
        await Task.Delay(1100);
        output.WriteLine($"B's checkpoints: {string.Join(", ", ReplicaState.Read(b.State)!.Checkpoints)}");

        // A is demoted cleanly and promoted again (C still away): its basis is its own volume at its durable batch.
        await toB2.DisposeAsync();
        await c.StopFollowingAsync();
        // As a clean demotion records it: its own volume, no incarnation.
        var basis = new HistoryBasis(a.Cache.VolumeId, Guid.Empty, a.Cache.Barrier.Local.DurableSequence);
        output.WriteLine($"basis {basis}; floor file: {File.ReadAllText(Path.Combine(a.State, ReplicaHistory.FloorFile))}");
        c.Follow();
        var aToC = LinkTo(f, a, c);
        aToC.MarkAllOutOfSync(basis);
        aToC.Start();
        await WaitInSyncAsync(aToC);
        var atA = await ReplicaFixture.ReadAllAsync(a.Cache);
        var atC = await ReplicaFixture.ReadAllAsync(c.Cache);
        var differing = Enumerable.Range(0, Blocks).Count(i => !atA.AsSpan(i * 4096, 4096).SequenceEqual(atC.AsSpan(i * 4096, 4096)));
        output.WriteLine($"blocks differing between A and C after the narrowed resync: {differing}");
        await aToC.DisposeAsync();
        if (a.Receiver is not null) await a.Receiver.DisposeAsync();
        if (b.Receiver is not null) await b.Receiver.DisposeAsync();
        if (!ReferenceEquals(a.Cache, f.Primary)) await a.Cache.DisposeAsync();
        Assert.Equal(0, differing);
    }
}
