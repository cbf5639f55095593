using System.Net;
using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using Xunit.Abstractions;

namespace ActorCache.Replication.Tests;

/// <summary>
/// What a resync after a crash must keep (found by a second review, reproduced here): marks no log records across a
/// connection that drops, and no "UpToDate" for a peer before the writes its resync read are in the primary's log.
/// </summary>
public sealed class ResyncOrderingTests(ITestOutputHelper output)
{
    private static readonly RingBuffer Ring = new(128L << 20);
    private static readonly ActorSystem Actors = ActorSystem.Create("resync-ordering", CacheDispatchers.Hocon);

    private static void MarkDirty(string linkState)
    {
        var bm = new OutOfSyncBitmap(TestReplica.Blocks);
        var saved = bm.Load(linkState)!.Value;
        bm.Save(linkState, saved with { Flags = saved.Flags | OutOfSyncBitmap.FileFlags.Dirty });
    }

    private static async Task<byte[]> ReadBlockAsync(IBlockTarget target, long block)
    {
        var data = new byte[4096];
        await target.ReadAsync(block * 4096, data);
        return data;
    }

    /// <summary>
    /// A primary crashed after a verify marked a block (saved by SaveMarks). Restarted, its first connection is narrowed
    /// (the saved marks included) but drops before the peer applied ResyncBegin; the reconnect narrows again from the logs
    /// alone and the verify mark is gone: the block stays different.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Verify_marks_saved_before_a_crash_survive_a_first_connection_that_drops(bool dropFirst)
    {
        await using var f = new ReplicaFixture();
        var a = new TestReplica("a", f.Primary, Path.Combine(f.Directory, "a-state"));
        var b = new TestReplica("b", f.Secondary, Path.Combine(f.Directory, "b-state"));
        b.Follow();
        var link = a.LinkTo(b);
        link.Start();
        await TestReplica.WaitInSyncAsync(link);
        var random = new Random(5);
        for (var i = 0; i < 40; i++) await a.Cache.WriteAsync(random.Next(0, 1000) * 4096L, ReplicaFixture.SelfChecking(i, 1, i), fua: false);
        await a.Cache.FlushAsync();
        await Task.Delay(1100);
        await a.Cache.WriteAsync(5 * 4096L, ReplicaFixture.SelfChecking(5, 1, 99), fua: false);
        await a.Cache.FlushAsync();
        await ReplicaFixture.WaitUntilAsync(() => link.HoldsEverything, TimeSpan.FromSeconds(30), () => $"{link.Status}");

        // Bit rot on B (its backing, a block no log holds): verify on A finds it and saves the mark.
        const long x = 2000;
        await using (var backing = new FileStream(Path.Combine(f.Directory, "secondary", "backing.img"), FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            backing.Position = x * 4096;
            backing.Write(Enumerable.Repeat((byte)0xAB, 4096).ToArray());
            backing.Flush(flushToDisk: true);
        }
        Assert.NotEqual(await ReadBlockAsync(a.Cache, x), await ReadBlockAsync(b.Cache, x));
        link.MarkOutOfSync(x, 1);
        link.SaveMarks();

        // A crashes (its bitmap stays dirty) and restarts as primary.
        await link.DisposeAsync();
        await ReplicaFixture.WaitUntilAsync(() => ReplicaState.Read(b.State) is { Disk: PeerDisk.UpToDate, Checkpoints.Count: > 0 }, TimeSpan.FromSeconds(10),
            () => $"{ReplicaState.Read(b.State)}");
        MarkDirty(Path.Combine(a.State, "peer-b"));
        ReplicaHistory.RecordOpen(a.State, a.Cache.Barrier.Local.DurableSequence);

        // The first connection's first frame (ResyncBegin, right after the 91-byte hello) is damaged in transit: B drops it.
        await using var proxy = FlippingProxy.Start(b.Receiver!.LocalEndpoint, flipAt: dropFirst ? 95 : -1);
        var restarted = a.LinkTo(b, via: () => proxy.LocalEndpoint);
        restarted.Start();
        await TestReplica.WaitInSyncAsync(restarted);
        output.WriteLine($"proxy connections {proxy.Connections}, flipped {proxy.Flipped}; {restarted.Status}");
        var atA = await ReadBlockAsync(a.Cache, x);
        var atB = await ReadBlockAsync(b.Cache, x);
        var differs = !atA.AsSpan().SequenceEqual(atB);
        await restarted.DisposeAsync();
        await b.Receiver!.DisposeAsync();
        Assert.False(differs, "block X (marked by verify, saved) still differs on B after the peer was reported in sync");
    }

    /// <summary>A log medium whose writes can be held: all of them, or those carrying one block's data.</summary>
    private sealed class GatedMedium(ILogMedium inner) : ILogMedium
    {
        private readonly object _gate = new();
        private int _mode; // 0 open, 1 closed, 2 hold writes carrying _held
        private byte[]? _held;
        public int Waiting, Passed;

        public void Close()
        {
            lock (_gate) _mode = 1;
        }

        public void HoldOnly(byte[] block)
        {
            lock (_gate)
            {
                (_mode, _held) = (2, block);
                Monitor.PulseAll(_gate);
            }
        }

        public void Open()
        {
            lock (_gate)
            {
                _mode = 0;
                Monitor.PulseAll(_gate);
            }
        }

        private bool Held(IReadOnlyList<ReadOnlyMemory<byte>> buffers) =>
            _mode == 1 || (_mode == 2 && buffers.Any(b => b.Length == 4096 && b.Span.SequenceEqual(_held)));

        public long SegmentSize => inner.SegmentSize;

        public void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
        {
            lock (_gate)
            {
                Waiting++;
                while (Held(buffers)) Monitor.Wait(_gate);
                Waiting--;
                Passed++;
            }
            inner.Write(address, buffers);
        }

        public void Sync() => inner.Sync();
        public void SyncAll() => inner.SyncAll();
        public bool TryReadWithoutWaiting(long address, Span<byte> destination) => inner.TryReadWithoutWaiting(address, destination);
        public bool TryRead(long address, Span<byte> destination) => inner.TryRead(address, destination);
        public SafeFileHandle? SegmentHandle(long segment) => inner.SegmentHandle(segment);
        public void Discard(long address, long length) => inner.Discard(address, length);
        public bool MayHoldStaleRecords(long segment) => inner.MayHoldStaleRecords(segment);
        public void PrepareAhead(long tail) => inner.PrepareAhead(tail);
        public void Release(long segment) => inner.Release(segment);
        public int SpareCount => inner.SpareCount;
        public IReadOnlyList<long> Segments => inner.Segments;
        public void Dispose() => inner.Dispose();
    }

    private static (WriteBackCache, GatedMedium) OpenGated(string directory)
    {
        Directory.CreateDirectory(directory);
        var backing = Path.Combine(directory, "backing.img");
        var options = ReplicaFixture.OptionsFor(directory);
        Directory.CreateDirectory(options.LogDirectory);
        var medium = new GatedMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize, maxFiles: options.LogCapacity / options.SegmentSize));
        return (WriteBackCache.Open("gp", FileBacking.Open(backing, ReplicaFixture.Size, create: !File.Exists(backing)), Ring, options, CacheMode.WriteBack,
            NullLogger.Instance, Actors, medium: medium), medium);
    }

    /// <summary>
    /// A resync read returns a write the primary accepted but has not logged yet (W, block X). Were the peer told it is
    /// UpToDate through the last batch now, its next checkpoint would say "A's batch L+1" for data holding W; a power loss
    /// before W's batch would then leave X different after a narrowed resync. So the link writes the log out first.
    /// </summary>
    [Fact]
    public async Task A_peer_is_not_UpToDate_before_the_writes_its_resync_read_are_in_the_log()
    {
        await using var f = new ReplicaFixture();
        var dir = Path.Combine(f.Directory, "gp");
        var (cache, gate) = OpenGated(dir);
        var a = new TestReplica("a", cache, Path.Combine(f.Directory, "a-state"));
        var b = new TestReplica("b", f.Secondary, Path.Combine(f.Directory, "b-state"));
        b.Follow();
        // A resync (not a catch-up from the log, which ships only what is logged) is what reads W from the ring.
        var link = a.LinkTo(b, catchUpRatio: 0);
        link.Start();
        await TestReplica.WaitInSyncAsync(link);
        for (var i = 0; i < 10; i++) await a.Cache.WriteAsync(i * 4096L, ReplicaFixture.SelfChecking(i, 1, 1), fua: false);
        await a.Cache.FlushAsync();
        await ReplicaFixture.WaitUntilAsync(() => link.HoldsEverything, TimeSpan.FromSeconds(30), () => $"{link.Status}");

        // B away; X written (so it is marked for B).
        const long x = 1500, y = 100;
        link.Disconnect();
        await a.Cache.WriteAsync(x * 4096L, ReplicaFixture.SelfChecking(x, 1, 1), fua: false);
        await a.Cache.FlushAsync();

        // The log holds: A (64 blocks at Y) waits in the flusher's write, W (X, new data) is accepted behind it.
        gate.Close();
        await a.Cache.WriteAsync(y * 4096L, ReplicaFixture.SelfChecking(y, 64, 2), fua: false);
        await ReplicaFixture.WaitUntilAsync(() => Volatile.Read(ref gate.Waiting) > 0, TimeSpan.FromSeconds(10), () => "the flusher did not reach the log");
        var w = ReplicaFixture.SelfChecking(x, 1, 3);
        await a.Cache.WriteAsync(x * 4096L, w, fua: false);
        var l = a.Cache.Barrier.Local.DurableSequence;

        // B back: the resync reads X (W's data, from the ring). W is not in the log, so B must not be told it is UpToDate
        // (its next checkpoint would name data no log holds) until W is written.
        link.Connect();
        await ReplicaFixture.WaitUntilAsync(() => ReadBlockAsync(b.Cache, x).Result.AsSpan().SequenceEqual(w), TimeSpan.FromSeconds(20),
            () => $"the resync did not bring W to B: {link.Status}");
        await Task.Delay(500);
        output.WriteLine($"L = {l}; with W held out of the log: {link.Status}");
        Assert.False(link.IsInSync, "B was told it is UpToDate while a write its resync read was not in the primary's log");
        gate.Open();
        await TestReplica.WaitInSyncAsync(link);
        Assert.True(a.Cache.Barrier.Local.DurableSequence > l, "W's batch is in the log before B is in sync");
        await link.DisposeAsync();
        await b.Receiver!.DisposeAsync();
        await a.Cache.DisposeAsync();
    }
}
