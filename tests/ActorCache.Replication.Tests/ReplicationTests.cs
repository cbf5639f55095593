using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using ActorCache.Blocks;

namespace ActorCache.Replication.Tests;

/// <summary>
/// The replication data path end to end: real caches in temporary directories, a real receiver and link
/// over loopback TCP, and a model of the primary's volume that the secondary must match (DESIGN §4).
/// </summary>
public sealed class ReplicationTests
{
    private const int Blocks = (int)(ReplicaFixture.Size / 4096);

    [Fact]
    public async Task Under_protocol_C_a_completed_FLUSH_or_FUA_means_the_secondary_has_the_data_durably()
    {
        await using var f = new ReplicaFixture();
        f.StartReceiver();
        f.StartLink(ReplicationProtocol.C);
        await f.WaitInSyncAsync();
        var random = new Random(11);
        var checks = 0;
        for (var op = 0; op < 400; op++)
        {
            var blocks = random.Next(1, 48);
            var block = random.Next(0, Blocks - blocks);
            switch (random.Next(20))
            {
                case < 14:
                    await f.WriteAsync(block, blocks, op);
                    break;
                case < 15:
                    await f.ZeroAsync(block, blocks, trim: random.Next(2) == 0);
                    break;
                case < 17:
                    // FUA: its sync point covers every earlier write too, so the whole volume must match.
                    await f.WriteAsync(block, blocks, op, fua: true);
                    await f.AssertSecondaryEqualsAsync(f.ModelCopy(), $"after the FUA write of op {op}");
                    checks++;
                    break;
                default:
                    await f.Primary.FlushAsync();
                    await f.AssertSecondaryEqualsAsync(f.ModelCopy(), $"after the FLUSH of op {op}");
                    checks++;
                    break;
            }
        }
        await f.Primary.FlushAsync();
        Assert.True(checks > 20);
        Assert.Null(f.Link!.Status.Problem);
        Assert.True(f.Link.Status.AckLatencyP50Micros > 0, "ack latency was measured");
        var expected = f.ModelCopy();
        Assert.Equal(expected, await ReplicaFixture.ReadAllAsync(f.Primary));
        // Durable on the secondary: closed and reopened (its log replayed), it still holds everything flushed.
        await f.Link.DisposeAsync();
        await f.ReopenSecondaryAsync();
        await f.AssertSecondaryEqualsAsync(expected, "after reopening the secondary");
        var state = ReplicaState.Read(f.SecondaryState);
        Assert.NotNull(state);
        Assert.Equal(PeerDisk.UpToDate, state.Disk);
        Assert.Equal(f.Primary.VolumeId, state.PrimaryVolumeId);
    }

    [Fact]
    public async Task Under_protocol_C_a_FLUSH_completes_only_after_the_peer_flushed()
    {
        await using var f = new ReplicaFixture();
        HeldFlushTarget? held = null;
        f.WrapSink = target => held = new HeldFlushTarget(target);
        f.StartReceiver();
        f.StartLink(ReplicationProtocol.C, ackTimeout: TimeSpan.FromSeconds(30));
        await f.WaitInSyncAsync();
        for (var round = 0; round < 3; round++)
        {
            await f.WriteAsync(round * 100, 16, round);
            held!.Hold();
            var flush = f.Primary.FlushAsync().AsTask();
            await held.FlushReached.WaitAsync(TimeSpan.FromSeconds(10));
            await Task.Delay(200);
            Assert.False(flush.IsCompleted, "the primary's FLUSH completed while the peer's flush was still held");
            held.Release();
            await flush.WaitAsync(TimeSpan.FromSeconds(10));
        }
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "at the end");
    }

    [Fact]
    public async Task With_the_peer_down_writes_and_FLUSH_go_on_and_the_peer_is_resynced_when_back()
    {
        await using var f = new ReplicaFixture();
        f.StartReceiver();
        f.PeerUp = false; // first the peer's endpoint is unknown
        var link = f.StartLink(ReplicationProtocol.C);
        var random = new Random(3);
        for (var i = 0; i < 50; i++) await f.WriteAsync(random.Next(0, Blocks / 2 - 8), 8, i);
        await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        var missed = link.Status.OutOfSyncBytes;
        Assert.True(missed > 0);
        Assert.NotEqual(PeerConnection.Connected, link.Status.Connection);
        // Set by the link's own loop when it fails to find the peer: waited for, not assumed by now.
        await ReplicaFixture.WaitUntilAsync(() => link.Status.Problem is not null, TimeSpan.FromSeconds(10), () => $"{link.Status}");
        for (var i = 50; i < 60; i++) await f.WriteAsync(random.Next(Blocks / 2, Blocks - 8), 8, i);
        await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(link.Status.OutOfSyncBytes > missed, "blocks written while the peer is away are tracked");

        f.PeerUp = true;
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the first resync");

        // Now the receiver goes away while connected: FLUSH must not hang, and the peer resyncs once it is back.
        await f.StopReceiverAsync();
        for (var i = 60; i < 120; i++)
        {
            await f.WriteAsync(random.Next(0, Blocks - 8), 8, i);
            if (i % 10 == 0) await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        }
        await ReplicaFixture.WaitUntilAsync(() => link.Status.OutOfSyncBytes > 0, TimeSpan.FromSeconds(10), () => $"nothing marked: {link.Status}");
        Assert.NotEqual(PeerDisk.UpToDate, link.Status.Disk);
        f.StartReceiver();
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the second resync");
        Assert.Equal(PeerDisk.UpToDate, ReplicaState.Read(f.SecondaryState)!.Disk);
    }

    [Fact]
    public async Task Writes_racing_the_resync_never_leave_older_data_on_the_peer()
    {
        await using var f = new ReplicaFixture();
        f.StartReceiver();
        f.PeerUp = false;
        var link = f.StartLink(ReplicationProtocol.C);
        for (var b = 0; b < Blocks; b += 64) await f.WriteAsync(b, 64, -1);
        await f.Primary.FlushAsync();
        Assert.Equal(ReplicaFixture.Size, link.Status.OutOfSyncBytes);
        // Between a resync run's read and its queueing, a newer version of the run's first block is written and its batch
        // published (once per run, so the retried read goes through): the peer must end with the newer one.
        var raced = new HashSet<long>();
        link.AfterResyncRead = async (start, _) =>
        {
            lock (raced)
                if (!raced.Add(start)) return;
            await f.WriteAsync(start, 1, (int)start + 77);
            await f.Primary.FlushAsync();
        };

        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            var round = 0;
            while (!stop.IsCancellationRequested)
            {
                // Each writer owns the blocks congruent to w mod 4: the model stays exact under concurrency.
                var block = random.Next(0, Blocks / 4) * 4 + w;
                await f.WriteAsync(block, 1, ++round * 10 + w);
                if (round % 50 == 0) await f.Primary.FlushAsync();
            }
        })).ToArray();
        f.PeerUp = true;
        await ReplicaFixture.WaitUntilAsync(() => link.Status.Disk == PeerDisk.UpToDate, TimeSpan.FromSeconds(60), () => $"resync did not finish: {link.Status}");
        await Task.Delay(100);
        stop.Cancel();
        await Task.WhenAll(writers);
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after a resync raced by writes");
        Assert.True(raced.Count >= Blocks / 256, $"only {raced.Count} resync runs were raced");
    }

    [Fact]
    public async Task A_frame_damaged_in_transit_is_never_applied_and_the_link_recovers()
    {
        await using var f = new ReplicaFixture();
        CheckingTarget? checking = null;
        f.WrapSink = target => checking = new CheckingTarget(target);
        var receiver = f.StartReceiver();
        // The first connection gets one byte flipped some way into the stream, in the middle of the batches' data.
        await using var proxy = FlippingProxy.Start(receiver.LocalEndpoint, flipAt: 300_000);
        f.Via = proxy.LocalEndpoint;
        var link = f.StartLink(ReplicationProtocol.C);
        await f.WaitInSyncAsync();
        var random = new Random(8);
        for (var i = 0; i < 200; i++)
        {
            await f.WriteAsync(random.Next(0, Blocks - 16), 16, i);
            if (i % 20 == 0) await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(15));
        }
        Assert.True(proxy.Flipped, "the proxy flipped a byte");
        await ReplicaFixture.WaitUntilAsync(() => proxy.Connections >= 2, TimeSpan.FromSeconds(15), () => "the link did not reconnect after the bad frame");
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        Assert.Equal(0, checking!.DamagedBlocksApplied);
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the bad frame and the resync");
    }

    /// <summary>
    /// A secondary that stops following its primary (promoted, or another node named primary) applies nothing more
    /// from it: the frame being applied finishes whole, the ones queued behind it on the connection are dropped with
    /// it, and the primary cannot reconnect. (A deposed primary's kernel delivered its queued batches into the newly
    /// promoted node when a network cut healed, before this.)
    /// </summary>
    [Fact]
    public async Task A_version_1_primary_is_answered_in_version_1_and_a_newer_one_refused_in_it()
    {
        // A node of the previous release greets in version 1 (a rolling update): no incarnation, no history narrowing.
        await using var f = new ReplicaFixture();
        f.StartReceiver();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(f.Receiver!.LocalEndpoint);
        await socket.SendAsync(Handshake.Hello("vol", f.Primary.VolumeId, 0, version: Handshake.Version1));
        var reply = new byte[Handshake.ReplySizeV1];
        Assert.True(await Handshake.ReadExactlyAsync(socket, reply, CancellationToken.None));
        Assert.Equal(Handshake.Magic, BitConverter.ToUInt64(reply, 0));
        Assert.Equal(Handshake.Status.Accepted, (Handshake.Status)BitConverter.ToUInt16(reply, 8));
        Assert.Equal(0, BitConverter.ToUInt16(reply, 40)); // no text: nothing follows the version 1 reply

        // A version 3 greeting is refused in version 1's format, which every version reads.
        using var newer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await newer.ConnectAsync(f.Receiver!.LocalEndpoint);
        var hello = Handshake.Hello("vol", f.Primary.VolumeId, 0);
        BitConverter.TryWriteBytes(hello.AsSpan(8), (ushort)3);
        await newer.SendAsync(hello);
        Assert.True(await Handshake.ReadExactlyAsync(newer, reply, CancellationToken.None));
        Assert.Equal(Handshake.Status.VersionMismatch, (Handshake.Status)BitConverter.ToUInt16(reply, 8));
    }

    [Fact]
    public async Task A_revoked_secondary_applies_nothing_more_from_its_former_primary()
    {
        await using var f = new ReplicaFixture();
        HeldWriteTarget? held = null;
        f.WrapSink = target => held = new HeldWriteTarget(target);
        f.StartReceiver();
        var link = f.StartLink(ReplicationProtocol.A);
        await f.WaitInSyncAsync();
        await f.WriteAsync(0, 8, seed: 1);
        await f.Primary.FlushAsync();
        await ReplicaFixture.WaitUntilAsync(() => link.Status.LagBatches == 0, TimeSpan.FromSeconds(10), () => "the first batch was not applied");

        held!.Hold();
        await f.WriteAsync(100, 4, seed: 2);
        await f.Primary.FlushAsync();
        await held.WriteReached.WaitAsync(TimeSpan.FromSeconds(10)); // the secondary is applying that batch
        await f.WriteAsync(200, 4, seed: 3);
        await f.Primary.FlushAsync(); // shipped behind it, on the same connection
        var revoke = f.StopFollowingAsync();
        await Task.Delay(200);
        Assert.False(revoke.IsCompleted, "the revocation waits for the frame being applied");
        held.Release();
        await revoke.WaitAsync(TimeSpan.FromSeconds(10));
        await ReplicaFixture.WaitUntilAsync(() => link.Status.Connection != PeerConnection.Connected, TimeSpan.FromSeconds(10),
            () => $"the link is still connected: {link.Status}");

        await f.WriteAsync(300, 4, seed: 4);
        await f.Primary.FlushAsync();
        await Task.Delay(500); // the link tries to reconnect meanwhile, and is refused
        var secondary = await ReplicaFixture.ReadAllAsync(f.Secondary);
        var model = f.ModelCopy();
        Assert.True(secondary.AsSpan(0, 8 * 4096).SequenceEqual(model.AsSpan(0, 8 * 4096)), "the batch applied before stays");
        Assert.True(secondary.AsSpan(100 * 4096, 4 * 4096).SequenceEqual(model.AsSpan(100 * 4096, 4 * 4096)), "the frame being applied finished whole");
        Assert.True(secondary.AsSpan(200 * 4096, 4 * 4096).IndexOfAnyExcept((byte)0) < 0, "a batch queued behind it was applied after the revocation");
        Assert.True(secondary.AsSpan(300 * 4096, 4 * 4096).IndexOfAnyExcept((byte)0) < 0, "a later batch was applied after the revocation");
        Assert.NotEqual(PeerConnection.Connected, link.Status.Connection);
    }

    [Fact]
    public async Task The_protocol_switches_live_from_A_to_C_to_B_under_writes()
    {
        await using var f = new ReplicaFixture();
        HeldFlushTarget? held = null;
        f.WrapSink = target => held = new HeldFlushTarget(target);
        f.StartReceiver();
        var link = f.StartLink(ReplicationProtocol.A, ackTimeout: TimeSpan.FromSeconds(60));
        await f.WaitInSyncAsync();
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            var random = new Random(1);
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                await f.WriteAsync(random.Next(0, Blocks - 4) / 2 * 2, 1, i); // even blocks; the checks below write odd ones
                await Task.Delay(1);
            }
        });

        // What a FLUSH waits for while the peer cannot flush: A and B not (B waits for receipt only), C does.
        // Ordering only: either the FLUSH completes while the peer's flush is still held, or it is still
        // pending once the peer's flush has been reached and some time has passed, and completes after the release.
        async Task<bool> FlushWaitsForPeerFlushAsync(int round, bool expectWait)
        {
            await f.WriteAsync(2 * round + 1, 1, 1000 + round);
            held!.Hold();
            var flush = f.Primary.FlushAsync().AsTask();
            bool waited;
            if (expectWait)
            {
                await held.FlushReached.WaitAsync(TimeSpan.FromSeconds(20));
                await Task.Delay(300);
                waited = !flush.IsCompleted;
            }
            else waited = await Task.WhenAny(flush, Task.Delay(TimeSpan.FromSeconds(20))) != flush;
            held.Release();
            await flush.WaitAsync(TimeSpan.FromSeconds(20));
            return waited;
        }

        Assert.False(await FlushWaitsForPeerFlushAsync(0, expectWait: false), "under A a FLUSH waited for the peer");
        link.Protocol = ReplicationProtocol.C;
        Assert.True(await FlushWaitsForPeerFlushAsync(1, expectWait: true), "under C a FLUSH did not wait for the peer's flush");
        link.Protocol = ReplicationProtocol.B;
        Assert.False(await FlushWaitsForPeerFlushAsync(2, expectWait: false), "under B a FLUSH waited for the peer's flush (not only its receipt)");
        link.Protocol = ReplicationProtocol.C;
        Assert.True(await FlushWaitsForPeerFlushAsync(3, expectWait: true), "back under C a FLUSH did not wait for the peer's flush");
        stop.Cancel();
        await writer;
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the protocol switches");
        Assert.Equal(PeerConnection.Connected, link.Status.Connection);
    }

    [Theory]
    [InlineData(ReplicationProtocol.C, ReplicationProtocol.B)]
    [InlineData(ReplicationProtocol.B, ReplicationProtocol.C)]
    public async Task A_switch_while_a_flush_waits_does_not_complete_it_before_the_peer_has_its_batch(ReplicationProtocol from, ReplicationProtocol to)
    {
        await using var f = new ReplicaFixture();
        HeldWriteTarget? held = null;
        f.WrapSink = target => held = new HeldWriteTarget(target);
        f.StartReceiver();
        var link = f.StartLink(from, ackTimeout: TimeSpan.FromSeconds(60));
        await f.WaitInSyncAsync();
        held!.Hold();
        await f.WriteAsync(100, 4, seed: 2);
        await held.WriteReached.WaitAsync(TimeSpan.FromSeconds(10)); // the receiver is stuck applying that batch: it reads nothing further
        await f.WriteAsync(200, 4, seed: 3);
        var flush = f.Primary.FlushAsync().AsTask(); // its sync point's frame is behind the stuck one: not received
        await Task.Delay(500);
        Assert.False(flush.IsCompleted, $"under {from} a FLUSH completed although the peer did not receive its batch");
        link.Protocol = to;
        await Task.Delay(500);
        var early = flush.IsCompleted;
        held.Release();
        await flush.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.False(early, $"switching {from} to {to} completed a FLUSH the peer had neither received nor made durable");
    }

    [Fact]
    public async Task A_full_mark_while_a_resyncs_end_waits_for_its_ack_is_resynced_too()
    {
        await using var f = new ReplicaFixture();
        HeldFlushTarget? held = null;
        f.WrapSink = target => held = new HeldFlushTarget(target);
        f.StartReceiver();
        f.PeerUp = false;
        var link = f.StartLink(ReplicationProtocol.C, ackTimeout: TimeSpan.FromSeconds(60), catchUpRatio: 0);
        for (var i = 0; i < 10; i++) await f.WriteAsync(i * 16, 8, i);
        await f.Primary.FlushAsync();
        held!.Hold();
        f.PeerUp = true;
        await ReplicaFixture.WaitUntilAsync(() => link.Status is { Connection: PeerConnection.Connected, OutOfSyncBytes: 0, Resync: not null },
            TimeSpan.FromSeconds(20), () => $"{link.Status}");
        await Task.Delay(500); // the resync's end is queued, its durable ack held by the peer's flush
        link.MarkAllOutOfSync();
        held.Release();
        // The peer goes UpToDate only after every block marked was resynced: nothing is left marked once it is.
        await ReplicaFixture.WaitUntilAsync(() => link.Status is { Disk: PeerDisk.UpToDate, OutOfSyncBytes: 0, Resync: null }, TimeSpan.FromSeconds(30),
            () => $"{link.Status}");
        await Task.Delay(1000);
        Assert.True(link.Status is { Disk: PeerDisk.UpToDate, OutOfSyncBytes: 0 }, $"{link.Status}");
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the second resync");
    }

    [Fact]
    public async Task The_resync_rate_limit_is_honoured()
    {
        await using var f = new ReplicaFixture();
        f.StartReceiver();
        f.PeerUp = false;
        const long rate = 4 << 20;
        var link = f.StartLink(ReplicationProtocol.C, rate: rate);
        for (var b = 0; b < Blocks; b += 64) await f.WriteAsync(b, 64, 7);
        await f.Primary.FlushAsync();
        var total = link.Status.OutOfSyncBytes;
        Assert.Equal(ReplicaFixture.Size, total);
        var watch = Stopwatch.StartNew();
        f.PeerUp = true;
        ResyncProgress? seen = null;
        await ReplicaFixture.WaitUntilAsync(() =>
        {
            var status = link.Status;
            if (status.Resync is { Done: > 0 } progress) seen = progress;
            return status.Disk == PeerDisk.UpToDate;
        }, TimeSpan.FromSeconds(30), () => $"resync did not finish: {link.Status}");
        watch.Stop();
        Assert.True(watch.Elapsed.TotalSeconds >= total / (double)rate * 0.8, $"{total} bytes resynced in {watch.Elapsed.TotalSeconds:F2}s at a limit of {rate} B/s");
        Assert.NotNull(seen);
        Assert.Equal(total, seen.Total);
        Assert.True(seen.BytesPerSecond < rate * 1.5, $"progress reported {seen.BytesPerSecond} B/s");
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the rate-limited resync");
    }
}

/// <summary>A TCP proxy that flips one byte of the first connection's client-to-server stream.</summary>
internal sealed class FlippingProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly long _flipAt;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _pumps = [];
    private Task _accepting = Task.CompletedTask;
    private int _connections;
    public volatile bool Flipped;

    private FlippingProxy(IPEndPoint target, long flipAt)
    {
        _target = target;
        _flipAt = flipAt;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
    }

    public static FlippingProxy Start(IPEndPoint target, long flipAt)
    {
        var proxy = new FlippingProxy(target, flipAt);
        proxy._accepting = Task.Run(proxy.AcceptAsync);
        return proxy;
    }

    public IPEndPoint LocalEndpoint => (IPEndPoint)_listener.LocalEndpoint;
    public int Connections => Volatile.Read(ref _connections);

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                var first = Interlocked.Increment(ref _connections) == 1;
                var server = new TcpClient();
                await server.ConnectAsync(_target, _stop.Token);
                lock (_pumps)
                {
                    _pumps.Add(PumpAsync(client, server, first ? _flipAt : -1));
                    _pumps.Add(PumpAsync(server, client, -1));
                }
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to, long flipAt)
    {
        var buffer = new byte[64 << 10];
        var position = 0L;
        try
        {
            var input = from.GetStream();
            var output = to.GetStream();
            while (true)
            {
                var n = await input.ReadAsync(buffer, _stop.Token);
                if (n == 0) break;
                if (flipAt >= position && flipAt < position + n)
                {
                    buffer[flipAt - position] ^= 0x40;
                    Flipped = true;
                }
                position += n;
                await output.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
            }
        }
        catch (Exception)
        {
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accepting;
        Task[] pumps;
        lock (_pumps) pumps = [.. _pumps];
        await Task.WhenAll(pumps);
    }
}

/// <summary>Disconnects (operator, ack timeout, lag bound) and the persisted out-of-sync bitmap.</summary>
public sealed class DisconnectTests
{
    private const int Blocks = (int)(ReplicaFixture.Size / 4096);

    [Fact]
    public async Task An_operator_disconnect_leaves_the_barrier_and_connect_resyncs_only_what_was_missed()
    {
        await using var f = new ReplicaFixture();
        f.StartReceiver();
        var link = f.StartLink(ReplicationProtocol.C);
        await f.WaitInSyncAsync();
        link.Disconnect();
        await ReplicaFixture.WaitUntilAsync(() => link.Status.Connection == PeerConnection.StandAlone, TimeSpan.FromSeconds(10), () => $"{link.Status}");
        for (var i = 0; i < 4; i++) await f.WriteAsync(100 + i * 8, 8, i);
        await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(32 * 4096, link.Status.OutOfSyncBytes);
        await Task.Delay(300);
        Assert.Equal(PeerConnection.StandAlone, link.Status.Connection); // no reconnect until asked
        link.Connect();
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after connect");
    }

    [Fact]
    public async Task A_peer_that_stops_acknowledging_is_disconnected_so_FLUSH_does_not_hang()
    {
        await using var f = new ReplicaFixture();
        HeldFlushTarget? held = null;
        f.WrapSink = target => held = new HeldFlushTarget(target);
        f.StartReceiver();
        // Short enough to show, long enough that the first sync and the resync at the end (a peer's fdatasync each) are not cut
        // on a loaded machine.
        var link = f.StartLink(ReplicationProtocol.C, ackTimeout: TimeSpan.FromSeconds(2));
        await f.WaitInSyncAsync();
        held!.Hold();
        await f.WriteAsync(5, 4, 1);
        await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Contains("did not acknowledge", link.Status.Problem);
        // The unacknowledged frames go into the bitmap once the session's tasks have stopped.
        await ReplicaFixture.WaitUntilAsync(() => link.Status.OutOfSyncBytes > 0, TimeSpan.FromSeconds(10), () => $"{link.Status}");
        held.Release();
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the peer came back");
    }

    [Fact]
    public async Task A_peer_lagging_beyond_the_bound_is_disconnected_and_resynced()
    {
        await using var f = new ReplicaFixture();
        HeldFlushTarget? held = null;
        f.WrapSink = target => held = new HeldFlushTarget(target);
        f.StartReceiver();
        var link = f.StartLink(ReplicationProtocol.A, ackTimeout: TimeSpan.FromSeconds(60), maxLag: 1 << 20);
        await f.WaitInSyncAsync();
        held!.Hold(); // nothing becomes durable on the peer: the send buffer only grows
        for (var b = 0; b < 1024; b += 64) await f.WriteAsync(b, 64, 2);
        await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20)); // protocol A: local durability only
        await ReplicaFixture.WaitUntilAsync(() => link.Status.Problem?.Contains("behind") == true, TimeSpan.FromSeconds(10), () => $"{link.Status}");
        Assert.True(link.Status.LagBytes <= 1 << 20);
        held.Release();
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the lagging peer was resynced");
    }

    [Fact]
    public async Task The_bitmap_survives_a_clean_restart_of_the_link_and_a_crash_means_a_full_resync()
    {
        await using var f = new ReplicaFixture();
        f.StartReceiver();
        f.PeerUp = false;
        var link = f.StartLink(ReplicationProtocol.C);
        await f.WriteAsync(40, 8, 1);
        await f.Primary.FlushAsync();
        Assert.Equal(8 * 4096, link.Status.OutOfSyncBytes);
        // While running the file on disk is dirty: a copy stands for what a crash would leave.
        var file = Path.Combine(f.LinkState, "out-of-sync.bitmap");
        var crashed = File.ReadAllBytes(file);
        await link.DisposeAsync();

        // Clean restart: the same 8 blocks, nothing more.
        link = f.StartLink(ReplicationProtocol.C);
        Assert.Equal(8 * 4096, link.Status.OutOfSyncBytes);
        f.PeerUp = true;
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the restarted link resynced");
        await link.DisposeAsync();

        // A crash: the file the link left is the dirty one; the link cannot know what the peer lacks.
        File.WriteAllBytes(file, crashed);
        link = f.StartLink(ReplicationProtocol.C);
        await ReplicaFixture.WaitUntilAsync(() => link.Status.Disk == PeerDisk.UpToDate, TimeSpan.FromSeconds(30), () => $"{link.Status}");
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the full resync");

        // Batches written while no link ran are not lost either.
        await link.DisposeAsync();
        await f.WriteAsync(900, 4, 3);
        await f.Primary.FlushAsync();
        f.PeerUp = false; // read before the resync begins (under load it had sent megabytes before the assertion)
        link = f.StartLink(ReplicationProtocol.C);
        Assert.Equal(ReplicaFixture.Size, link.Status.OutOfSyncBytes);
        f.PeerUp = true;
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after batches the link missed");
    }
}
