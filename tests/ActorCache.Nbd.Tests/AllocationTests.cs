using ActorCache.Testing;

using System.Buffers.Binary;
using System.Net.Sockets;
using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Nbd.Tests;

/// <summary>
/// The request path allocates nothing per request: thousands of pipelined READs and WRITEs through a
/// real server and socket must not grow the process's allocated bytes by anything like a byte count
/// per request (any object would cost at least 24 bytes).
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class AllocationTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-alloc-").FullName;
    private readonly RingBuffer _ring = new(64L << 20);
    private readonly ActorSystem _actors = ActorSystem.Create("alloc", CacheDispatchers.Hocon);
    private IBlockTarget _target = null!;
    private NbdServer? _server;

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>Serves a 64 MiB file backing, alone or under the write-back cache (whose WRITEs are received straight into ring slots).</summary>
    private async Task StartAsync(bool cached)
    {
        var backing = FileBacking.Open(Path.Combine(_dir, "v.img"), 64 << 20, create: true);
        await backing.WriteAsync(0, new byte[1 << 20], fua: false);
        _target = cached
            ? WriteBackCache.Open("v", backing, _ring, new CacheOptions
            {
                LogDirectory = Path.Combine(_dir, "log"),
                SegmentSize = 64 << 20,
                LogCapacity = 1L << 30,
                MaxBatchBlocks = 256,
            }, CacheMode.WriteBack, NullLogger.Instance, _actors)
            : backing;
        NbdListenAddress.TryParse($"unix:{Path.Combine(_dir, "nbd.sock")}", out var address, out _);
        var export = new NbdExport("v", "", _target, false);
        _server = new NbdServer(new SingleExport(export), new NbdServerOptions { Listen = [address!] }, NullLogger<NbdServer>.Instance);
        _server.Start();
    }

    public async Task DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
        if (_target is not null) await _target.DisposeAsync();
        await _actors.Terminate();
        Directory.Delete(_dir, recursive: true);
    }

    private sealed class SingleExport(NbdExport export) : INbdExportCatalog
    {
        public bool TryGet(string name, out NbdExport found)
        {
            found = export;
            return true;
        }

        public IReadOnlyList<NbdExport> List() => [export];

        /// <summary>Bitmap "A": every other 64 KiB dirty, so a reply carries many extents.</summary>
        public ValueTask<IReadOnlyList<(long Offset, long Length)>?> DirtyRangesAsync(NbdExport opened, string bitmap, CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlyList<(long Offset, long Length)>?>(bitmap == "A"
                ? [.. Enumerable.Range(0, 512).Select(i => ((long)i * (128 << 10), (long)(64 << 10)))]
                : null);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Reads_and_writes_allocate_nothing_per_request(bool cached)
    {
        await StartAsync(cached);
        await using var client = await RawNbdClient.ConnectAsync(Path.Combine(_dir, "nbd.sock"));
        await client.GoAsync("v");
        var socket = client.Socket;

        // Requests are prebuilt; the client side uses synchronous span-based socket calls, which allocate nothing.
        const int depth = 16;
        var write = new byte[depth * (NbdProtocol.RequestHeaderSize + 4096)];
        var read = new byte[depth * NbdProtocol.RequestHeaderSize];
        for (var i = 0; i < depth; i++)
        {
            new NbdRequestHeader(0, NbdCommand.Write, (ulong)i, (ulong)(i * 4096), 4096).Write(write.AsSpan(i * (NbdProtocol.RequestHeaderSize + 4096)));
            new NbdRequestHeader(0, NbdCommand.Read, (ulong)i, (ulong)(i * 4096), 4096).Write(read.AsSpan(i * NbdProtocol.RequestHeaderSize));
        }
        var writeReplies = new byte[depth * 16];
        var readReplies = new byte[depth * (NbdReplyEncoder.OffsetDataHeaderSize + 4096)];

        void Round()
        {
            socket.Send(write);
            Receive(socket, writeReplies);
            socket.Send(read);
            Receive(socket, readReplies);
        }

        for (var i = 0; i < 200; i++) Round(); // warm up: request objects, pools, JIT tiers
        using var listener = new AllocListener();
        var (perRequest, seen) = BytesPer(Round, rounds: 1000, requestsPerRound: depth * 2);
        Assert.True(perRequest < 8, $"{perRequest:F1} bytes allocated per request ({seen}): {listener.Top(8)}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Block_status_of_base_allocation_and_a_dirty_bitmap_allocates_nothing_per_request(bool cached)
    {
        await StartAsync(cached);
        await using var client = await RawNbdClient.ConnectAsync(Path.Combine(_dir, "nbd.sock"));
        var ids = await client.NegotiateAsync("v", MetaContexts.BaseAllocation, MetaContexts.DirtyBitmapPrefix + "A");
        Assert.Equal(2, ids.Count);
        var socket = client.Socket;

        const int depth = 16;
        var requests = new byte[depth * NbdProtocol.RequestHeaderSize];
        for (var i = 0; i < depth; i++)
            new NbdRequestHeader(0, NbdCommand.BlockStatus, (ulong)i, (ulong)(i * (1 << 20)), 4 << 20).Write(requests.AsSpan(i * NbdProtocol.RequestHeaderSize));
        var chunk = new byte[NbdReplyEncoder.BlockStatusChunkSize(NbdRequest.MaxExtents)];

        void Round()
        {
            socket.Send(requests);
            for (var i = 0; i < depth; i++)
            {
                // One reply: a chunk per context, the last one done.
                while (true)
                {
                    Receive(socket, chunk.AsSpan(0, NbdProtocol.StructuredReplyHeaderSize));
                    var flags = (ReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(chunk.AsSpan(4));
                    var type = (ReplyType)BinaryPrimitives.ReadUInt16BigEndian(chunk.AsSpan(6));
                    if (type != ReplyType.BlockStatus) throw new InvalidOperationException($"BLOCK_STATUS answered with {type}");
                    Receive(socket, chunk.AsSpan(0, (int)BinaryPrimitives.ReadUInt32BigEndian(chunk.AsSpan(16))));
                    if ((flags & ReplyFlags.Done) != 0) break;
                }
            }
        }

        for (var i = 0; i < 200; i++) Round();
        using var listener = new AllocListener();
        var (perRequest, seen) = BytesPer(Round, rounds: 500, requestsPerRound: depth);
        Assert.True(perRequest < 8, $"{perRequest:F1} bytes allocated per request ({seen}): {listener.Top(8)}");
    }

    /// <summary>
    /// The database pattern through the front (J9, J10): a write then a FLUSH, or a FUA write, at queue depth 1.
    /// Each commit is answered when the log's fdatasync covers it, so it is the path that waits, not the one that
    /// completes at once.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_commit_at_queue_depth_one_allocates_nothing_per_request(bool fua)
    {
        await StartAsync(cached: true);
        await using var client = await RawNbdClient.ConnectAsync(Path.Combine(_dir, "nbd.sock"));
        await client.GoAsync("v");
        var socket = client.Socket;

        var write = new byte[NbdProtocol.RequestHeaderSize + 4096];
        new NbdRequestHeader(fua ? CommandFlags.Fua : 0, NbdCommand.Write, 1, 8192, 4096).Write(write);
        var flush = new byte[NbdProtocol.RequestHeaderSize];
        new NbdRequestHeader(0, NbdCommand.Flush, 2, 0, 0).Write(flush);
        var reply = new byte[16];

        void Round()
        {
            socket.Send(write);
            Receive(socket, reply);
            if (fua) return;
            socket.Send(flush);
            Receive(socket, reply);
        }

        // Each commit closes a generation whose sync point the history keeps (32 bytes, kept, not garbage) in a list
        // that doubles: 4,500 warm-up commits grow it to room for the 3,000 the windows add.
        for (var i = 0; i < 4500; i++) Round();
        using var listener = new AllocListener();
        var (perCommit, seen) = BytesPer(Round, rounds: 1000, requestsPerRound: 1);
        Assert.True(perCommit < 8, $"{perCommit:F1} bytes allocated per {(fua ? "FUA write" : "write and FLUSH")} ({seen}): {listener.Top(8)}");
    }

    /// <summary>
    /// Bytes allocated per request over <paramref name="rounds"/> rounds, the least of up to three windows, and what the
    /// measure saw: the count is process-wide, so one-off work elsewhere (the actor system finishing its start, tiered JIT)
    /// can land in a window, while an allocation per request shows in every one. A window over the bound has what the process
    /// allocates in as long without requests taken off (the lesser of the idle spells just before and just after it, so work
    /// the requests left running counts at most once): on a busy machine a window lasts many times longer, and what the process
    /// allocates by the clock (timers, the test runner) then came to 16-20 bytes a request (any object per request is 24 or more).
    /// </summary>
    private static (double PerRequest, string Seen) BytesPer(Action round, int rounds, int requestsPerRound)
    {
        var perRequest = double.MaxValue;
        var seen = "";
        var requests = (long)rounds * requestsPerRound;
        long? idleBefore = null; // allocated in the idle spell that ended just before this window, when there was one
        for (var window = 0; window < 3 && perRequest >= 8; window++)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < rounds; i++) round();
            var spent = GC.GetTotalAllocatedBytes(precise: true) - before;
            var elapsed = watch.Elapsed;
            seen += $"{(seen.Length > 0 ? "; " : "")}{spent} bytes in {requests} requests in {elapsed.TotalMilliseconds:F0} ms";
            if (spent >= 8 * requests)
            {
                var idleFrom = GC.GetTotalAllocatedBytes(precise: true);
                Thread.Sleep(elapsed);
                var idleAfter = GC.GetTotalAllocatedBytes(precise: true) - idleFrom;
                var idle = Math.Min(idleAfter, idleBefore ?? idleAfter);
                seen += $", {idle} in as long idle";
                spent = Math.Max(0, spent - idle);
                idleBefore = idleAfter;
            }
            else idleBefore = null;
            perRequest = Math.Min(perRequest, (double)spent / requests);
        }
        return (perRequest, seen);
    }

    private static void Receive(Socket socket, byte[] buffer) => Receive(socket, buffer.AsSpan());

    private static void Receive(Socket socket, Span<byte> buffer)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            // Poll first: a receive that has to block makes the runtime allocate an operation object,
            // which would count against the server.
            socket.Poll(-1, SelectMode.SelectRead);
            var n = socket.Receive(buffer[done..]);
            if (n == 0) throw new EndOfStreamException();
            done += n;
        }
    }
}

/// <summary>Allocation is measured process-wide, so these tests run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation";
}
