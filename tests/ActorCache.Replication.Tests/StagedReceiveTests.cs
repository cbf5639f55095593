using System.Buffers.Binary;
using System.Net.Sockets;
using ActorCache.Blocks;
using ActorCache.Cache;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Replication.Tests;

/// <summary>
/// A secondary receives a batch's data and a resync run straight into its cache's ring slots (one copy, from the socket).
/// Spoken to by hand, frame by frame, as a primary would: the entries land where their headers say, a frame whose data
/// does not match its checksum is applied in no part and its slots go back to the ring, and the connection is dropped.
/// The cache has a ring of its own, so the free slots counted here are only this test's.
/// </summary>
public sealed class StagedReceiveTests
{
    private readonly Guid _primaryVolumeId = Guid.NewGuid();

    [Fact]
    public async Task Batches_and_resync_runs_land_whole_and_a_damaged_one_leaves_nothing_behind()
    {
        await using var f = new ReplicaFixture();
        var ring = new RingBuffer(64L << 20);
        await using var secondary = f.OpenCache("staged", ring);
        await using var receiver = StartReceiver(f, secondary, "staged");

        // Every other one of the ring's first 16 slots given back: the next claims come out of order (1, 3, 5, ... 15, then 16
        // on), so the frames below are received into several pieces of memory, their entries across the joins.
        var held = new int[16];
        Assert.True(ring.TryClaim(held));
        for (var i = held.Length - 1; i >= 1; i -= 2) ring.Release(held[i]);

        // A batch of data, zeroes and data again, then a resync run: every block where its entry says.
        using (var primary = await ConnectAsync(receiver))
        {
            var first = ReplicaFixture.SelfChecking(10, 3, seed: 1);
            var second = ReplicaFixture.SelfChecking(100, 1, seed: 2);
            var frame = BatchFrame(frameId: 0, sequence: 1,
                [new(10, 3, LogEntryType.Data, Crc32C.Compute(first)), new(50, 2, LogEntryType.Zero, 0), new(100, 1, LogEntryType.Data, Crc32C.Compute(second))],
                [.. first, .. second]);
            // Up to the middle of its data first: the slots for all of it are taken before it arrives (received into them).
            var free = ring.FreeSlots;
            await primary.SendAsync(frame.AsMemory(0, frame.Length - 2 * 4096));
            await ReplicaFixture.WaitUntilAsync(() => ring.FreeSlots == free - 4, TimeSpan.FromSeconds(10),
                () => $"{free - ring.FreeSlots} ring slots staged for a batch of 4 data blocks");
            await primary.SendAsync(frame.AsMemory(frame.Length - 2 * 4096));
            var run = ReplicaFixture.SelfChecking(200, 300, seed: 3); // blocks 200-499: slots 9, 11, 13, 15, then 16 on
            await SendResyncAsync(primary, frameId: 1, block: 200, run, Crc32C.Compute(run));
            await ExpectReceivedAsync(primary, 1);
            // Received is acknowledged before the frame is applied: wait for the apply.
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (!(await ReadAsync(secondary, 200, 300)).AsSpan().SequenceEqual(run))
            {
                Assert.True(DateTime.UtcNow < until, "the resync run was not applied");
                await Task.Delay(20);
            }
            Assert.Equal(first, await ReadAsync(secondary, 10, 3));
            Assert.Equal(second, await ReadAsync(secondary, 100, 1));
        }
        await secondary.FlushAsync();
        for (var i = 0; i < held.Length; i += 2) ring.Release(held[i]);
        await WaitRingFreeAsync(ring);

        // A batch whose second entry's data was damaged on the way: neither entry is applied, the connection is dropped.
        using (var primary = await ConnectAsync(receiver))
        {
            var good = ReplicaFixture.SelfChecking(1000, 4, seed: 4);
            var damaged = ReplicaFixture.SelfChecking(1100, 2, seed: 5);
            var crc = Crc32C.Compute(damaged);
            damaged[5000] ^= 0x20;
            await SendBatchAsync(primary, frameId: 0, sequence: 2,
                [new(1000, 4, LogEntryType.Data, Crc32C.Compute(good)), new(1100, 2, LogEntryType.Data, crc)], [.. good, .. damaged]);
            await ExpectDroppedAsync(primary);
        }
        Assert.False((await ReadAsync(secondary, 1000, 4)).AsSpan().ContainsAnyExcept((byte)0), "an entry of the damaged batch was applied");
        Assert.False((await ReadAsync(secondary, 1100, 2)).AsSpan().ContainsAnyExcept((byte)0), "the damaged entry was applied");
        await WaitRingFreeAsync(ring);

        // The same for a resync run.
        using (var primary = await ConnectAsync(receiver))
        {
            var run = ReplicaFixture.SelfChecking(1500, 64, seed: 6);
            var crc = Crc32C.Compute(run);
            run[64 * 4096 - 1] ^= 1;
            await SendResyncAsync(primary, frameId: 0, block: 1500, run, crc);
            await ExpectDroppedAsync(primary);
        }
        Assert.False((await ReadAsync(secondary, 1500, 64)).AsSpan().ContainsAnyExcept((byte)0), "the damaged resync run was applied");
        await WaitRingFreeAsync(ring);

        // A batch whose header verifies but whose last entry lies past the volume's end, its block and count summing past
        // long.MaxValue: refused whole before anything is queued.
        using (var primary = await ConnectAsync(receiver))
        {
            var good = ReplicaFixture.SelfChecking(2000, 2, seed: 7);
            await SendBatchAsync(primary, frameId: 0, sequence: 2,
                [new(2000, 2, LogEntryType.Data, Crc32C.Compute(good)), new(long.MaxValue - 1, 2, LogEntryType.Trim, 0)], good);
            await ExpectDroppedAsync(primary);
        }
        Assert.False((await ReadAsync(secondary, 2000, 2)).AsSpan().ContainsAnyExcept((byte)0), "an entry of a batch reaching past the volume was applied");
        await WaitRingFreeAsync(ring);
        Assert.Equal(ReplicaFixture.SelfChecking(10, 3, seed: 1), await ReadAsync(secondary, 10, 3)); // what was applied before stays
    }

    [Fact]
    public async Task A_primary_that_stalls_in_the_middle_of_a_frame_is_dropped_and_its_slots_go_back_but_a_slow_one_is_not()
    {
        await using var f = new ReplicaFixture();
        var ring = new RingBuffer(64L << 20);
        await using var secondary = f.OpenCache("stall", ring);
        await using var receiver = StartReceiver(f, secondary, "stall", stallTimeout: TimeSpan.FromSeconds(5));
        using var primary = await ConnectAsync(receiver);

        // Slow but going: the last block of the batch in ten pieces 600 ms apart, 6 s in all (gaps far below the 5 s even on a busy machine).
        var slow = ReplicaFixture.SelfChecking(10, 8, seed: 1);
        var frame = BatchFrame(frameId: 1, sequence: 1, [new(10, 8, LogEntryType.Data, Crc32C.Compute(slow))], slow);
        await primary.SendAsync(frame.AsMemory(0, frame.Length - 4096));
        for (var piece = 0; piece < 10; piece++)
        {
            await Task.Delay(600);
            var from = frame.Length - 4096 + piece * 4096 / 10;
            await primary.SendAsync(frame.AsMemory(from, frame.Length - 4096 + (piece + 1) * 4096 / 10 - from));
        }
        await ExpectReceivedAsync(primary, 1);
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!(await ReadAsync(secondary, 10, 8)).AsSpan().SequenceEqual(slow))
        {
            Assert.True(DateTime.UtcNow < until, "the slowly sent batch was not applied");
            await Task.Delay(20);
        }
        await secondary.FlushAsync();
        await WaitRingFreeAsync(ring);

        // Stalled: all of a batch but its last block, then nothing. Its 8 slots are staged, then given back when it is dropped.
        var stalled = ReplicaFixture.SelfChecking(100, 8, seed: 2);
        frame = BatchFrame(frameId: 2, sequence: 2, [new(100, 8, LogEntryType.Data, Crc32C.Compute(stalled))], stalled);
        await primary.SendAsync(frame.AsMemory(0, frame.Length - 4096));
        await ReplicaFixture.WaitUntilAsync(() => ring.FreeSlots == ring.SlotCount - 8, TimeSpan.FromSeconds(10),
            () => $"{ring.SlotCount - ring.FreeSlots} ring slots staged for a batch of 8 data blocks");
        await ExpectDroppedAsync(primary);
        await WaitRingFreeAsync(ring);
        Assert.False((await ReadAsync(secondary, 100, 8)).AsSpan().ContainsAnyExcept((byte)0), "the stalled batch was applied");
    }

    /// <summary>A receiver on loopback whose volume "vol" is <paramref name="secondary"/> (its replica state under <paramref name="name"/>).</summary>
    private static ReplicaReceiver StartReceiver(ReplicaFixture f, WriteBackCache secondary, string name, TimeSpan? stallTimeout = null) =>
        ReplicaReceiver.Start(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            (volume, _, _) => volume == "vol" ? new ReplicaSink(secondary, Path.Combine(f.Directory, name, "replica")) : null, NullLogger.Instance, stallTimeout);

    private async Task<Socket> ConnectAsync(ReplicaReceiver receiver)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(receiver.LocalEndpoint);
        await socket.SendAsync(Handshake.Hello("vol", _primaryVolumeId, 0, Guid.NewGuid()));
        var reply = new byte[Handshake.ReplySize];
        Assert.True(await Handshake.ReadExactlyAsync(socket, reply, CancellationToken.None));
        Assert.Equal(Handshake.Status.Accepted, (Handshake.Status)BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(8)));
        var rest = BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(40)) +
                   (reply[42] == 1 ? BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(56)) * Handshake.RunSize : 0);
        if (rest > 0) Assert.True(await Handshake.ReadExactlyAsync(socket, new byte[rest], CancellationToken.None));
        return socket;
    }

    private Task SendBatchAsync(Socket socket, long frameId, long sequence, LogEntry[] entries, byte[] data) =>
        socket.SendAsync(BatchFrame(frameId, sequence, entries, data));

    private byte[] BatchFrame(long frameId, long sequence, LogEntry[] entries, byte[] data)
    {
        var frame = new byte[FrameHeader.Size + LogFormat.BlockSize + data.Length];
        new FrameHeader(FrameKind.Batch, 1 + data.Length / LogFormat.BlockSize, frameId, 0, 0).Write(frame);
        var header = new BatchHeader(sequence, sequence, 0, LogFormat.SyncPointFlag, _primaryVolumeId, data.Length / LogFormat.BlockSize, 0, entries.Length);
        LogFormat.WriteHeader(frame.AsSpan(FrameHeader.Size), header, entries);
        data.CopyTo(frame, FrameHeader.Size + LogFormat.BlockSize);
        return frame;
    }

    private static async Task SendResyncAsync(Socket socket, long frameId, long block, byte[] data, uint crc)
    {
        var frame = new byte[FrameHeader.Size + data.Length];
        new FrameHeader(FrameKind.ResyncData, data.Length / LogFormat.BlockSize, frameId, block, crc).Write(frame);
        data.CopyTo(frame, FrameHeader.Size);
        await socket.SendAsync(frame);
    }

    /// <summary>Reads acknowledgements until one says Received for <paramref name="frameId"/>.</summary>
    private static async Task ExpectReceivedAsync(Socket socket, long frameId)
    {
        var ack = new byte[Ack.Size];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            Assert.True(await Handshake.ReadExactlyAsync(socket, ack, timeout.Token), "the secondary closed the connection");
            Assert.True(Ack.TryRead(ack, out var kind, out var id));
            if (kind == AckKind.Received && id >= frameId) return;
        }
    }

    /// <summary>The secondary ends the connection: whatever it acknowledged before, then the end of the stream.</summary>
    private static async Task ExpectDroppedAsync(Socket socket)
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // reset: dropped as well
        }
    }

    private static async Task<byte[]> ReadAsync(IBlockTarget target, long block, int blocks)
    {
        var data = new byte[blocks * LogFormat.BlockSize];
        await target.ReadAsync(block * LogFormat.BlockSize, data);
        return data;
    }

    private static Task WaitRingFreeAsync(RingBuffer ring) =>
        ReplicaFixture.WaitUntilAsync(() => ring.FreeSlots == ring.SlotCount, TimeSpan.FromSeconds(10),
            () => $"{ring.SlotCount - ring.FreeSlots} ring slots were not given back");
}
