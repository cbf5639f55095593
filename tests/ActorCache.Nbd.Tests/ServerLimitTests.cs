using ActorCache.Blocks;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Nbd.Tests;

/// <summary>
/// Where the front meets the limits of a client or a target: a client that sends large READs and never reads the replies
/// holds at most the connection's budget of buffers (<see cref="NbdServerOptions.MaxLargeBufferBytesPerConnection"/>), not
/// 64 requests' worth, and is answered once it reads; clients together hold at most the node's budget
/// (<see cref="NbdServerOptions.MaxLargeBufferBytes"/>); a target that finds no extent still gets a BLOCK_STATUS reply with one.
/// </summary>
public sealed class ServerLimitTests : IAsyncLifetime
{
    private const long Size = 64 << 20;
    private const uint Large = 32 << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-nbd-budget-").FullName;
    private FileBacking _backing = null!;
    private CountingTarget _counting = null!;
    private NbdServer _server = null!;
    private string Socket => Path.Combine(_dir, "nbd.sock");

    /// <summary>Counts the large reads the server has started on the volume; finds no extent when told to.</summary>
    private sealed class CountingTarget(IBlockTarget below) : ForwardingTarget(below)
    {
        public int LargeReads;
        public volatile bool NoExtents;

        public override ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents, CancellationToken cancellationToken = default) =>
            NoExtents ? ValueTask.FromResult(0) : base.GetAllocationAsync(offset, length, extents, cancellationToken);

        public override ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            if (destination.Length >= Large) Interlocked.Increment(ref LargeReads);
            return base.ReadAsync(offset, destination, cancellationToken);
        }
    }

    private sealed class Catalog(NbdExport export) : INbdExportCatalog
    {
        public bool TryGet(string name, out NbdExport found)
        {
            found = export;
            return name is "" or "vol0";
        }

        public IReadOnlyList<NbdExport> List() => [export];
    }

    public Task InitializeAsync()
    {
        _backing = FileBacking.Open(Path.Combine(_dir, "vol0.img"), Size, create: true);
        _counting = new CountingTarget(_backing);
        _server = TestServer.Start(new Catalog(new NbdExport("vol0", "the volume", _counting, false)), Socket);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _backing.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Unread_large_reads_hold_at_most_the_budget_and_all_are_answered_once_read()
    {
        await using var client = await RawNbdClient.ConnectAsync(Socket);
        await client.GoAsync("vol0");
        for (var cookie = 1ul; cookie <= 8; cookie++) await client.SendRequestAsync(NbdCommand.Read, 0, Large, cookie);
        // The server takes them in on its own threads: waited for, not assumed done after a fixed while (a busy machine).
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref _counting.LargeReads) >= 1, TimeSpan.FromSeconds(20)), "no large read started");
        await Task.Delay(1000);
        // The pool lends a 64 MiB array for 32 MiB and its reply header: two fit in the default 128 MiB.
        Assert.InRange(Volatile.Read(ref _counting.LargeReads), 1, 2);

        var answered = new HashSet<ulong>();
        while (answered.Count < 8)
        {
            var (flags, type, cookie, payload) = await client.ReadChunkAsync();
            Assert.NotEqual(ReplyType.Error, type);
            if ((flags & ReplyFlags.Done) != 0) answered.Add(cookie);
        }
        Assert.Equal(8, _counting.LargeReads);
    }

    [Fact]
    public async Task Clients_together_hold_at_most_the_nodes_budget_of_large_buffers_and_all_are_answered_once_read()
    {
        // A node budget of 256 MiB: four 64 MiB arrays, and a quarter of it (one array) per connection.
        var socket = Path.Combine(_dir, "budget.sock");
        await using var server = TestServer.Start(new Catalog(new NbdExport("vol0", "the volume", _counting, false)), socket, maxLargeBufferBytes: 256L << 20);
        var clients = new List<RawNbdClient>();
        try
        {
            async Task ConnectAndReadTwiceUnreadAsync(int count)
            {
                for (var c = 0; c < count; c++)
                {
                    var client = await RawNbdClient.ConnectAsync(socket);
                    clients.Add(client);
                    await client.GoAsync("vol0");
                    for (var cookie = 1ul; cookie <= 2; cookie++) await client.SendRequestAsync(NbdCommand.Read, 0, Large, cookie);
                }
            }

            // The server takes the reads in on its own threads: the count is waited for, then given a while to go past it.
            async Task AssertLargeReadsAsync(int expected)
            {
                SpinWait.SpinUntil(() => Volatile.Read(ref _counting.LargeReads) >= expected, TimeSpan.FromSeconds(20));
                await Task.Delay(1000);
                Assert.Equal(expected, Volatile.Read(ref _counting.LargeReads));
            }

            // Three clients: one read each (each alone could hold two, 128 MiB, without the quarter).
            await ConnectAndReadTwiceUnreadAsync(3);
            await AssertLargeReadsAsync(3);
            // Two more: the fourth array fills the node's budget, and the fifth client waits.
            await ConnectAndReadTwiceUnreadAsync(2);
            await AssertLargeReadsAsync(4);
            Assert.Equal(256L << 20, server.LargeBuffersHeld);

            // Each client reads its own replies (a reply another client holds goes out only as that client reads).
            await Task.WhenAll(clients.Select(async client =>
            {
                var answered = new HashSet<ulong>();
                while (answered.Count < 2)
                {
                    var (flags, type, cookie, _) = await client.ReadChunkAsync();
                    Assert.NotEqual(ReplyType.Error, type);
                    if ((flags & ReplyFlags.Done) != 0) answered.Add(cookie);
                }
            })).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(10, _counting.LargeReads);
            for (var waited = 0; server.LargeBuffersHeld != 0 && waited < 300; waited++) await Task.Delay(100); // up to 30 s on a loaded machine
            Assert.Equal(0, server.LargeBuffersHeld);
        }
        finally
        {
            foreach (var client in clients) await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_client_that_takes_none_of_its_replies_is_dropped_and_its_buffers_go_back_to_the_node()
    {
        // Four clients that send two large READs each and never read: the node's whole budget (four 64 MiB arrays) held.
        var socket = Path.Combine(_dir, "stalled.sock");
        await using var server = TestServer.Start(new Catalog(new NbdExport("vol0", "the volume", _counting, false)), socket,
            maxLargeBufferBytes: 256L << 20, sendTimeout: TimeSpan.FromSeconds(15));
        var stalled = new List<RawNbdClient>();
        try
        {
            for (var c = 0; c < 4; c++)
            {
                var client = await RawNbdClient.ConnectAsync(socket);
                stalled.Add(client);
                await client.GoAsync("vol0");
                for (var cookie = 1ul; cookie <= 2; cookie++) await client.SendRequestAsync(NbdCommand.Read, 0, Large, cookie);
            }
            // Within the send timeout (15 s, long for a busy machine): the first client's stalled send counts from its first READ.
            for (var waited = 0; server.LargeBuffersHeld < 256L << 20 && waited < 120; waited++) await Task.Delay(100);
            Assert.Equal(256L << 20, server.LargeBuffersHeld);

            // Their sends stall; past the send timeout each is dropped, and its buffers go back.
            for (var waited = 0; server.LargeBuffersHeld != 0 && waited < 450; waited++) await Task.Delay(100);
            Assert.Equal(0, server.LargeBuffersHeld);
            foreach (var client in stalled)
            {
                // What the socket held before the drop may still be there to read; then the connection ends (a read of a
                // connection still open would time out instead).
                var ended = await Record.ExceptionAsync(async () =>
                {
                    while (true) await client.ReadChunkAsync();
                });
                Assert.True(ended is EndOfStreamException or IOException, $"a dropped client's connection did not end: {ended}");
            }

            // A client that reads is served a large READ at once.
            await using var reader = await RawNbdClient.ConnectAsync(socket);
            await reader.GoAsync("vol0");
            await reader.SendRequestAsync(NbdCommand.Read, 0, Large, cookie: 9);
            var (_, type, answered, _) = await reader.ReadChunkAsync();
            Assert.Equal(9ul, answered);
            Assert.NotEqual(ReplyType.Error, type);
        }
        finally
        {
            foreach (var client in stalled) await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_client_gone_in_the_middle_of_a_large_write_gives_its_buffer_back_to_the_node()
    {
        var socket = Path.Combine(_dir, "gone.sock");
        await using var server = TestServer.Start(new Catalog(new NbdExport("vol0", "the volume", _counting, false)), socket, maxLargeBufferBytes: 256L << 20);
        await using (var client = await RawNbdClient.ConnectAsync(socket))
        {
            await client.GoAsync("vol0");
            // A 32 MiB WRITE's header and 1 MiB of its payload, then the client is gone.
            await client.SendRequestAsync(NbdCommand.Write, 0, Large, cookie: 1, payload: new byte[1 << 20]);
            for (var waited = 0; server.LargeBuffersHeld == 0 && waited < 300; waited++) await Task.Delay(100); // up to 30 s on a loaded machine
            Assert.Equal(64L << 20, server.LargeBuffersHeld);
        }
        for (var waited = 0; server.LargeBuffersHeld != 0 && waited < 300; waited++) await Task.Delay(100); // up to 30 s on a loaded machine
        Assert.Equal(0, server.LargeBuffersHeld);
    }

    [Fact]
    public async Task A_target_that_finds_no_extent_is_answered_with_one_extent_of_data()
    {
        _counting.NoExtents = true;
        await using var client = await RawNbdClient.ConnectAsync(Socket);
        await client.GoAsync("vol0");
        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 65536, cookie: 9);
        var (_, extents) = Assert.Single(await client.ReadBlockStatusAsync(9));
        Assert.Equal([(65536u, 0u)], extents); // proto.md: at least one descriptor; flags 0 (allocated data) claims nothing
    }
}
