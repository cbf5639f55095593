using System.Net;
using ActorCache.Cache;

namespace ActorCache.Replication.Tests;

/// <summary>One replica of "vol" in a test with several: its cache, its state directory, and its receiver while it follows a primary.</summary>
internal sealed class TestReplica(string name, WriteBackCache cache, string stateDirectory) : IAsyncDisposable
{
    public const int Blocks = (int)(ReplicaFixture.Size / 4096);

    public string Name { get; } = name;
    public WriteBackCache Cache { get; set; } = cache;
    public string State { get; } = stateDirectory;
    public ReplicaSink? Sink { get; set; }
    public ReplicaReceiver? Receiver { get; set; }
    public volatile HistoryBasis? Followed;

    public ReplicaHistory History => new(Cache, State);

    /// <summary>Takes connections for "vol" as a secondary (a new sink each time it starts following a primary), applying through <paramref name="through"/> when given.</summary>
    public void Follow(ActorCache.Blocks.IBlockTarget? through = null)
    {
        Sink = new ReplicaSink(through ?? Cache, State) { History = History, Durable = basis => Followed = basis };
        Receiver ??= ReplicaReceiver.Start(new IPEndPoint(IPAddress.Loopback, 0), volume => volume == "vol" ? Sink : null,
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
    }

    public async Task StopFollowingAsync()
    {
        if (Sink is { } sink) await sink.RevokeAsync();
        Sink = null;
    }

    /// <summary>A link from this replica (as primary) to <paramref name="to"/>; <paramref name="resynced"/> counts the blocks it resyncs.</summary>
    public ReplicaLink LinkTo(TestReplica to, Action<long>? resynced = null, Func<EndPoint?>? via = null, double catchUpRatio = ReplicaLinkOptions.DefaultCatchUpMaxLogRatio)
    {
        var link = new ReplicaLink(new ReplicaLinkOptions
        {
            Volume = "vol",
            PeerNode = to.Name,
            ResolvePeer = _ => ValueTask.FromResult(via?.Invoke() ?? to.Receiver?.LocalEndpoint),
            StateDirectory = Path.Combine(State, "peer-" + to.Name),
            ReconnectInterval = TimeSpan.FromMilliseconds(100),
            History = History,
            CatchUpMaxLogRatio = catchUpRatio,
            // As ReplicaFixture: a test that holds a peer's flush on purpose, or a slow fdatasync on a loaded machine, must not
            // have the link cut under it by the product's 5 s watchdog.
            AckTimeout = TimeSpan.FromSeconds(30),
        }, Cache, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        if (resynced is not null)
            link.AfterResyncRead = (_, count) =>
            {
                resynced(count);
                return ValueTask.CompletedTask;
            };
        return link;
    }

    /// <summary>Writes <paramref name="count"/> self-checking blocks at random places (recorded in <paramref name="written"/>), then FLUSH.</summary>
    public async Task WriteAsync(Random random, HashSet<long> written, int count, int seed, bool flushEach = false)
    {
        for (var i = 0; i < count; i++)
        {
            var block = random.Next(0, Blocks);
            written.Add(block);
            await Cache.WriteAsync(block * 4096L, ReplicaFixture.SelfChecking(block, 1, seed + i), fua: false);
            if (flushEach) await Cache.FlushAsync();
        }
        await Cache.FlushAsync();
    }

    /// <summary>A (the fixture's primary cache) shipping to B (its secondary) and C (a third cache), both in sync.</summary>
    public static async Task<(TestReplica A, TestReplica B, TestReplica C, ReplicaLink ToB, ReplicaLink ToC)> StartThreeAsync(ReplicaFixture f)
    {
        var a = new TestReplica("a", f.Primary, Path.Combine(f.Directory, "a-state"));
        var b = new TestReplica("b", f.Secondary, Path.Combine(f.Directory, "b-state"));
        var c = new TestReplica("c", f.OpenCache("c"), Path.Combine(f.Directory, "c-state"));
        b.Follow();
        c.Follow();
        var toB = a.LinkTo(b);
        var toC = a.LinkTo(c);
        toB.Start();
        toC.Start();
        await WaitInSyncAsync(toB);
        await WaitInSyncAsync(toC);
        return (a, b, c, toB, toC);
    }

    public static async Task WaitInSyncAsync(ReplicaLink link) =>
        await ReplicaFixture.WaitUntilAsync(() => link.IsInSync, TimeSpan.FromSeconds(30), () => $"not in sync: {link.Status}");

    /// <summary>How many blocks two replicas hold differently.</summary>
    public static async Task<int> DifferingBlocksAsync(TestReplica one, TestReplica other)
    {
        var a = await ReplicaFixture.ReadAllAsync(one.Cache);
        var b = await ReplicaFixture.ReadAllAsync(other.Cache);
        return Enumerable.Range(0, Blocks).Count(i => !a.AsSpan(i * 4096, 4096).SequenceEqual(b.AsSpan(i * 4096, 4096)));
    }

    public async ValueTask DisposeAsync()
    {
        if (Receiver is not null) await Receiver.DisposeAsync();
        await Cache.DisposeAsync();
    }
}
