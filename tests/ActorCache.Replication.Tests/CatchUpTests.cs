using ActorCache.Blocks;
using ActorCache.Cache;

namespace ActorCache.Replication.Tests;

/// <summary>
/// A peer back after a disconnect is caught up from the primary's log (the batches it missed, in order, as they were
/// written), and resynced from the bitmap where the log cannot give them back.
/// </summary>
public sealed class CatchUpTests
{
    private const int Region = 64; // blocks written while the peer is away, 8 at a time

    [Fact]
    public async Task A_peer_back_after_a_disconnect_gets_every_batch_it_missed_from_the_log_in_order()
    {
        var (f, link, recording) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, catchUpRatio: 100));
        await using var _ = f;

        // Each block is overwritten six times while the peer is away: a resync would send each once, a catch-up every version.
        var expected = new List<Write>();
        for (var round = 2; round < 8; round++) await WriteRegionAsync(f, round, expected);
        Assert.Equal(Region * 4096, link.Status.OutOfSyncBytes);

        recording.Start();
        link.Connect();
        await f.WaitInSyncAsync();
        var received = recording.Stop();
        Assert.Equal(expected, received);
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the catch-up");
        Assert.Equal(PeerDisk.UpToDate, ReplicaState.Read(f.SecondaryState)!.Disk);

        // Live again: the next write goes out as a batch, and a second outage catches up the same way.
        await DisconnectAsync(link);
        expected.Clear();
        await WriteRegionAsync(f, 9, expected);
        recording.Start();
        link.Connect();
        await f.WaitInSyncAsync();
        Assert.Equal(expected, recording.Stop());
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the second catch-up");
    }

    [Fact]
    public async Task A_peer_away_across_a_clean_restart_of_the_primary_is_still_caught_up_from_the_log()
    {
        var (f, link, recording) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, catchUpRatio: 100));
        await using var _ = f;
        var expected = new List<Write>();
        await WriteRegionAsync(f, 2, expected);

        // The primary stops cleanly and starts again while the peer is still away (unreachable now, not disconnected by hand),
        // and is written to again before the peer is back.
        f.PeerUp = false;
        await f.ReopenPrimaryAsync();
        link = f.StartLink(ReplicationProtocol.C, catchUpRatio: 100);
        Assert.Equal(Region * 4096, link.Status.OutOfSyncBytes);
        Assert.False(File.Exists(Path.Combine(f.LinkState, CatchUpPoint.FileName)), "a start takes the saved point: a crash from here must not find it");
        await WriteRegionAsync(f, 3, expected);

        recording.Start();
        f.PeerUp = true;
        await f.WaitInSyncAsync();
        Assert.Equal(expected, recording.Stop()); // every batch from both runs of the primary, in order: not a resync of the blocks
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the catch-up across the restart");
        Assert.Equal(PeerDisk.UpToDate, ReplicaState.Read(f.SecondaryState)!.Disk);
    }

    [Fact]
    public async Task A_point_left_from_an_older_stop_is_not_used_for_a_bitmap_that_changed_since()
    {
        var (f, link, _) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, catchUpRatio: 100));
        await using var _ = f;
        await WriteRegionAsync(f, 2, expected: null);
        f.PeerUp = false;
        await f.ReopenPrimaryAsync();
        var pointFile = Path.Combine(f.LinkState, CatchUpPoint.FileName);
        var older = File.ReadAllBytes(pointFile);
        link = f.StartLink(ReplicationProtocol.C, catchUpRatio: 100);

        // Block 500, which no batch wrote, differs on the peer (as a verify finds it) and is marked; a clean stop then saves no
        // point. The older one comes back, as if deleting it had failed: same volume, same last batch, but other bits.
        await f.Secondary.WriteAsync(500 * 4096, ReplicaFixture.SelfChecking(500, 1, 6), fua: true);
        link.MarkOutOfSync(500, 1);
        await f.ReopenPrimaryAsync();
        Assert.False(File.Exists(pointFile), "a point was saved although a verify marked a block");
        File.WriteAllBytes(pointFile, older);
        f.StartLink(ReplicationProtocol.C, catchUpRatio: 100);

        f.PeerUp = true;
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the restart with an older point"); // a catch-up would clear block 500's mark
    }

    [Fact]
    public async Task A_log_far_longer_than_the_blocks_it_changed_is_not_shipped_the_blocks_are_resynced()
    {
        var (f, link, recording) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C)); // the default ratio: at most 1.25x the bytes out of sync
        await using var _ = f;
        for (var round = 2; round < 8; round++) await WriteRegionAsync(f, round, expected: null); // 6 versions: 13.5x the blocks, headers included

        recording.Start();
        link.Connect();
        await f.WaitInSyncAsync();
        Assert.Equal([new Write(0, Region * 4096, Crc32C.Compute(f.ModelCopy().AsSpan(0, Region * 4096 - 4)))], recording.Stop());
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the resync");
    }

    [Fact]
    public async Task A_batch_the_log_cannot_give_back_makes_the_catch_up_a_resync_of_every_block_missed()
    {
        var (f, link, recording) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, catchUpRatio: 100));
        await using var _ = f;
        var shipped = new List<Write>();
        await WriteRegionAsync(f, 2, shipped);
        await WriteRegionAsync(f, 3, expected: null);

        // The outage's first version of blocks 56-63 (its 8th batch) is damaged in the primary's log (as a reused segment would
        // read); the primary never reads it again (version 3 replaced it), but the catch-up must ship it after 7 others, and cannot.
        var received = await DamageAndReconnectAsync(f, link, recording, 56);
        Assert.Equal(shipped[..7], received[..7]); // the batches before the damaged one went out from the log
        Assert.Contains(received, w => w.Length > 8 * 4096); // then a resync run: the blocks were sent from the bitmap
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the resync that replaced the catch-up");
    }

    [Fact]
    public async Task A_catch_up_that_falls_back_midway_resyncs_only_the_blocks_of_the_batches_not_sent()
    {
        var (f, link, recording) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, catchUpRatio: 100));
        await using var _ = f;
        var shipped = new List<Write>();
        await WriteRegionAsync(f, 2, shipped);
        // Blocks 0-7 and 32-39 again, after the batch the catch-up cannot read: 0-7 are sent early from the log and still
        // missing after it, and the primary reads no block from that batch (it serves its log's blocks unchecked).
        foreach (var block in (int[])[0, 32])
        {
            await f.WriteAsync(block, 8, 3);
            await f.Primary.FlushAsync();
        }

        // The outage's version of blocks 32-39 (its 5th batch) is damaged in the primary's log (as a reused segment would read).
        var received = await DamageAndReconnectAsync(f, link, recording, 32);
        Assert.Equal(shipped[..4], received[..4]); // blocks 0-31 went out from the log
        // Then a resync of what the 5th batch and later ones wrote: blocks 32-63 and 0-7, each once, not all 64 marked.
        var resynced = received[4..];
        Assert.Equal(40 * 4096, resynced.Sum(w => (long)w.Length));
        Assert.DoesNotContain(resynced, w => w.Offset < 32 * 4096 && w.Offset + w.Length > 8 * 4096);
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the narrowed resync that replaced the catch-up");
        Assert.Equal(PeerDisk.UpToDate, ReplicaState.Read(f.SecondaryState)!.Disk);
    }

    [Fact]
    public async Task Blocks_marked_by_a_verify_during_a_catch_up_are_resynced_not_cleared_with_the_batches()
    {
        // 64 KiB/s: the catch-up of the 8 batches below (288 KiB of log) takes seconds, so the mark lands in the middle of it.
        var (f, link, recording) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, rate: 64 << 10, catchUpRatio: 100));
        await using var _ = f;
        await WriteRegionAsync(f, 2, expected: null);

        link.Connect();
        await ReplicaFixture.WaitUntilAsync(() => link.Status is { Connection: PeerConnection.Connected, Disk: PeerDisk.Outdated, Resync.Done: > 0 },
            TimeSpan.FromSeconds(10), () => $"no catch-up seen: {link.Status}");
        // Block 500, which no batch writes, differs on the peer (as a verify would find it), and is marked meanwhile.
        await f.Secondary.WriteAsync(500 * 4096, ReplicaFixture.SelfChecking(500, 1, 6), fua: true);
        link.MarkOutOfSync(500, 1);
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the catch-up and the resync of the marked block");
    }

    [Fact]
    public async Task A_block_marked_by_a_verify_as_a_catch_up_begins_is_resynced_not_narrowed_away()
    {
        var (f, link, _) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, catchUpRatio: 100));
        await using var _ = f;
        await WriteRegionAsync(f, 2, expected: null);
        // Block 500, which no batch writes, differs on the peer and is marked after the connect chose a catch-up, before the
        // catch-up reads the log: no index of batches names it, so the resync that follows must not be narrowed to one.
        link.BeforeCatchUp = async () =>
        {
            await f.Secondary.WriteAsync(500 * 4096, ReplicaFixture.SelfChecking(500, 1, 6), fua: true);
            link.MarkOutOfSync(500, 1);
        };
        link.Connect();
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the catch-up and the resync of the marked block");
    }

    /// <summary>
    /// Batches the peer applied but had not made durable when the connection ended are sent again from the first one it
    /// lacks durably: until the last of them is applied again, blocks they wrote are rewound. The peer must not count itself
    /// consistent meanwhile (it is told a resync runs until that batch), or a failover to it then would serve a mix.
    /// </summary>
    [Fact]
    public async Task A_peer_resent_batches_it_had_applied_but_not_made_durable_is_not_consistent_until_it_has_them_again()
    {
        var (f, link, _, flushes, writes) = await AppliedNotDurableAsync();
        await using var _f = f;
        PeerDisk disk;
        try
        {
            writes.Hold();
            link.Connect();
            await flushes.FlushCancelled.WaitAsync(TimeSpan.FromSeconds(10));
            flushes.Release();
            await writes.WriteReached.WaitAsync(TimeSpan.FromSeconds(10)); // the first batch sent again, held before it is applied
            disk = ReplicaState.Read(f.SecondaryState)!.Disk;
        }
        finally
        {
            writes.Release(); // else the receiver's connection never ends, nor the test
            flushes.Release();
        }
        Assert.NotEqual(PeerDisk.UpToDate, disk);
        await AssertCaughtUpAsync(f, "after the catch-up");
    }

    /// <summary>
    /// As above, but the first catch-up dies at once (its first frame, the overlap's begin, is damaged in transit) after queueing
    /// at most its first batch. The next one must still bracket every batch the peer may hold from the first session, not only
    /// those the short one queued: the bound is never lowered, or the peer would count itself consistent while the resent
    /// batches rewind blocks.
    /// </summary>
    [Fact]
    public async Task A_catch_up_cut_short_does_not_narrow_what_the_next_one_brackets()
    {
        var (f, link, receiver, flushes, writes) = await AppliedNotDurableAsync();
        await using var _f = f;
        // The next connection goes through a proxy that damages its first frame (after the 91-byte hello for "vol"), while
        // the catch-up is held to 16 KiB/s: it queues at most one batch before the peer drops the connection.
        await using var proxy = FlippingProxy.Start(receiver.LocalEndpoint, flipAt: Handshake.HelloSize + 3 + 10);
        f.Via = proxy.LocalEndpoint;
        link.ResyncBytesPerSecond = 16 << 10;
        var disk = PeerDisk.UpToDate;
        try
        {
            writes.Hold(56 * 4096); // the last batch of the region, the only one the catch-ups resend there
            link.Connect();
            await flushes.FlushCancelled.WaitAsync(TimeSpan.FromSeconds(15));
            flushes.Release();
            await ReplicaFixture.WaitUntilAsync(() => proxy.Flipped && proxy.Connections >= 2, TimeSpan.FromSeconds(15),
                () => $"the link did not reconnect after the damaged frame: {link.Status}");
            link.ResyncBytesPerSecond = 0;
            await writes.WriteReached.WaitAsync(TimeSpan.FromSeconds(30));
            // A bracket narrowed to the short catch-up's batch ends with it: the peer then flushes the resent batches before
            // this one and records UpToDate. Give that the time to happen before deciding it did not.
            var deadline = DateTime.UtcNow.AddSeconds(2);
            while ((disk = ReplicaState.Read(f.SecondaryState)!.Disk) != PeerDisk.UpToDate && DateTime.UtcNow < deadline)
                await Task.Delay(50);
        }
        finally
        {
            writes.Release();
            flushes.Release();
        }
        Assert.NotEqual(PeerDisk.UpToDate, disk);
        await AssertCaughtUpAsync(f, "after the second catch-up");
    }

    [Fact]
    public async Task A_catch_up_that_does_not_gain_on_the_writes_gives_way_to_a_resync()
    {
        // 64 KiB/s of catch-up (the resync rate limit applies to it too) against a writer far faster: 32 KiB per FLUSH outruns it
        // at two FLUSHes a second, which a loaded machine's fdatasync still allows (at 256 KiB/s it needed eight).
        var (f, link, recording) = await AwayAsync(x => x.StartLink(ReplicationProtocol.C, rate: 64 << 10, catchUpGain: TimeSpan.FromSeconds(1), catchUpRatio: 100));
        await using var _ = f;
        await WriteRegionAsync(f, 2, expected: null);

        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                await f.WriteAsync(1000 + i % 8 * 8, 8, 100 + i);
                await f.Primary.FlushAsync();
            }
        });
        recording.Start();
        link.Connect();
        await ReplicaFixture.WaitUntilAsync(() => recording.Seen().Any(w => w.Length > 8 * 4096), TimeSpan.FromSeconds(30),
            () => $"no resync run reached the peer: {link.Status}");
        stop.Cancel();
        await writer;
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), "after the resync that replaced the catch-up");
    }

    /// <summary>
    /// A resync's begin that reaches the replica while a resync's end waits for its flush (a catch-up's overlap that ended
    /// just before the catch-up fell back to a resync) cancels that end: the replica does not become UpToDate mid-resync.
    /// </summary>
    [Fact]
    public async Task A_resync_begin_after_a_resync_end_not_yet_durable_keeps_the_replica_inconsistent()
    {
        await using var f = new ReplicaFixture();
        HeldFlushTarget? flushes = null;
        f.WrapSink = target => flushes = new HeldFlushTarget(target);
        f.StartReceiver();
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream,
            System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(f.Receiver!.LocalEndpoint);
        await socket.SendAsync(Handshake.Hello("vol", f.Primary.VolumeId, 0, Guid.NewGuid()));
        var reply = new byte[Handshake.ReplySize];
        Assert.True(await Handshake.ReadExactlyAsync(socket, reply, CancellationToken.None));
        Assert.Equal(Handshake.Status.Accepted, (Handshake.Status)BitConverter.ToUInt16(reply, 8));

        await SendControlAsync(socket, FrameKind.ResyncBegin, 1, 0);
        await ReadAcksUntilAsync(socket, AckKind.Durable, 1);
        flushes!.Hold();
        await SendControlAsync(socket, FrameKind.ResyncDone, 2, 5);
        await flushes.FlushReached.WaitAsync(TimeSpan.FromSeconds(10)); // the flush that would make it UpToDate, held
        await SendControlAsync(socket, FrameKind.ResyncBegin, 3, 0);
        await ReadAcksUntilAsync(socket, AckKind.Received, 3);
        await Task.Delay(200); // the receiver acknowledges receipt first, then applies
        flushes.Release();
        await ReadAcksUntilAsync(socket, AckKind.Durable, 2);
        Assert.Equal(PeerDisk.Inconsistent, ReplicaState.Read(f.SecondaryState)!.Disk);
    }

    private static async Task SendControlAsync(System.Net.Sockets.Socket socket, FrameKind kind, long frameId, long block)
    {
        var frame = new byte[FrameHeader.Size];
        new FrameHeader(kind, 0, frameId, block, 0).Write(frame);
        await Handshake.SendAllAsync(socket, frame, CancellationToken.None);
    }

    private static async Task ReadAcksUntilAsync(System.Net.Sockets.Socket socket, AckKind kind, long frameId)
    {
        var ack = new byte[Ack.Size];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            Assert.True(await Handshake.ReadExactlyAsync(socket, ack, timeout.Token), "the receiver closed the connection");
            Assert.True(Ack.TryRead(ack, out var got, out var id));
            if (got == kind && id >= frameId) return;
        }
    }

    /// <summary>A primary and a secondary that records what it applies, in sync; the region written (seed 1), then the peer disconnected.</summary>
    private static async Task<(ReplicaFixture F, ReplicaLink Link, RecordingTarget Recording)> AwayAsync(Func<ReplicaFixture, ReplicaLink> startLink)
    {
        var f = new ReplicaFixture();
        try
        {
            RecordingTarget? recording = null;
            f.WrapSink = target => recording = new RecordingTarget(target);
            f.StartReceiver();
            var link = startLink(f);
            await f.WaitInSyncAsync();
            await WriteRegionAsync(f, seed: 1, expected: null);
            await DisconnectAsync(link);
            return (f, link, recording!);
        }
        catch
        {
            await f.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// A primary under protocol A and a peer that holds the region (seed 1) durably, then applied its rewrite (seed 2, 8
    /// batches) without making any of it durable, then lost the connection. The peer's flush stays held until the next
    /// connection cancels it (<see cref="HeldFlushTarget.FlushCancelled"/>): released while the peer has not yet seen the
    /// connection end (under load), it would make every applied batch durable, and no catch-up would resend any.
    /// </summary>
    private static async Task<(ReplicaFixture F, ReplicaLink Link, ReplicaReceiver Receiver, HeldFlushTarget Flushes, HeldWriteTarget Writes)>
        AppliedNotDurableAsync()
    {
        var f = new ReplicaFixture();
        HeldFlushTarget? flushes = null;
        HeldWriteTarget? writes = null;
        try
        {
            f.WrapSink = target => writes = new HeldWriteTarget(flushes = new HeldFlushTarget(target));
            var receiver = f.StartReceiver();
            var link = f.StartLink(ReplicationProtocol.A, ackTimeout: TimeSpan.FromSeconds(60), catchUpRatio: 100);
            await f.WaitInSyncAsync();
            await WriteRegionAsync(f, seed: 1, expected: null);
            await ReplicaFixture.WaitUntilAsync(() => link.HoldsEverything, TimeSpan.FromSeconds(10), () => $"{link.Status}");
            flushes!.Hold();
            await WriteRegionAsync(f, 2, expected: null); // protocol A: the FLUSHes wait for the local log only
            await flushes.FlushReached.WaitAsync(TimeSpan.FromSeconds(10));
            var applied = ReplicaFixture.SelfChecking(56, 8, 2);
            await ReplicaFixture.WaitUntilAsync(() => ReplicaFixture.ReadAllAsync(f.Secondary).Result.AsSpan(56 * 4096, 8 * 4096).SequenceEqual(applied),
                TimeSpan.FromSeconds(10), () => "the peer did not apply the batches");
            await DisconnectAsync(link);
            return (f, link, receiver, flushes, writes!);
        }
        catch
        {
            flushes?.Release(); // else the receiver's connection never ends, nor its disposal
            await f.DisposeAsync();
            throw;
        }
    }

    /// <summary>The peer ends equal to the primary and records UpToDate again.</summary>
    private static async Task AssertCaughtUpAsync(ReplicaFixture f, string what)
    {
        await f.WaitInSyncAsync();
        await f.Primary.FlushAsync();
        await f.AssertSecondaryEqualsAsync(f.ModelCopy(), what);
        await ReplicaFixture.WaitUntilAsync(() => ReplicaState.Read(f.SecondaryState)!.Disk == PeerDisk.UpToDate, TimeSpan.FromSeconds(10),
            () => "the peer did not record UpToDate again");
    }

    private static async Task DisconnectAsync(ReplicaLink link)
    {
        link.Disconnect();
        await ReplicaFixture.WaitUntilAsync(() => link.Status.Connection == PeerConnection.StandAlone, TimeSpan.FromSeconds(10), () => $"{link.Status}");
    }

    /// <summary>Writes the region 8 blocks at a time, each write followed by a FLUSH (one batch each).</summary>
    private static async Task WriteRegionAsync(ReplicaFixture f, int seed, List<Write>? expected)
    {
        for (var block = 0; block < Region; block += 8)
        {
            await f.WriteAsync(block, 8, seed);
            expected?.Add(new Write(block * 4096, 8 * 4096, Crc32C.Compute(ReplicaFixture.SelfChecking(block, 8, seed).AsSpan(..^4))));
            await f.Primary.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    /// <summary>
    /// Damages the outage's first batch writing <paramref name="block"/> (of three: before the outage, and two during it), then
    /// reconnects the peer and waits until it is in sync: the writes it applied meanwhile, in order.
    /// </summary>
    private static async Task<List<Write>> DamageAndReconnectAsync(ReplicaFixture f, ReplicaLink link, RecordingTarget recording, long block)
    {
        var versions = BatchesWriting(f, block);
        Assert.Equal(3, versions.Count);
        await DamageDataAsync(versions[1]);
        recording.Start();
        link.Connect();
        await f.WaitInSyncAsync();
        return recording.Stop();
    }

    /// <summary>Flips a bit in a logged batch's first data block: its header still reads, its data no longer matches it.</summary>
    private static async Task DamageDataAsync((string File, long Offset) batch)
    {
        await using var stream = new FileStream(batch.File, FileMode.Open, FileAccess.ReadWrite);
        stream.Position = batch.Offset + 4096 + 100;
        var b = stream.ReadByte();
        stream.Position--;
        stream.WriteByte((byte)(b ^ 0x40));
    }

    /// <summary>Every batch in the primary's log files that writes <paramref name="block"/> first, oldest first: (segment file, header offset).</summary>
    private static List<(string File, long Offset)> BatchesWriting(ReplicaFixture f, long block)
    {
        var found = new List<(long Sequence, string File, long Offset)>();
        var entries = new LogEntry[LogFormat.MaxEntries];
        foreach (var file in Directory.EnumerateFiles(Path.Combine(f.Directory, "primary", "log"), "segment-*.log"))
        {
            var bytes = File.ReadAllBytes(file);
            for (var at = 0; at + 4096 <= bytes.Length; at += 4096)
                if (LogFormat.TryReadHeader(bytes.AsSpan(at, 4096), f.Primary.VolumeId, out var header, entries) &&
                    entries.AsSpan(0, header.EntryCount).ToArray().Any(e => e.Block == block && e.Type == LogEntryType.Data))
                    found.Add((header.Sequence, file, at));
        }
        return [.. found.OrderBy(b => b.Sequence).Select(b => (b.File, b.Offset))];
    }
}

public sealed record Write(long Offset, int Length, uint Crc);

/// <summary>A sink target that records the writes it applies while recording: offset, length and checksum, in order.</summary>
public sealed class RecordingTarget(IBlockTarget below) : ForwardingTarget(below)
{
    private readonly List<Write> _writes = [];
    private volatile bool _recording;

    public void Start()
    {
        lock (_writes) _writes.Clear();
        _recording = true;
    }

    public List<Write> Stop()
    {
        _recording = false;
        return Seen();
    }

    /// <summary>The writes recorded so far (recording goes on).</summary>
    public List<Write> Seen()
    {
        lock (_writes) return [.. _writes];
    }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken cancellationToken = default)
    {
        if (_recording)
            lock (_writes) _writes.Add(new Write(offset, source.Length, Crc32C.Compute(source.Span[..^4])));
        return base.WriteAsync(offset, source, fua, cancellationToken);
    }

    public override ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        if (_recording)
            lock (_writes) _writes.Add(new Write(staged.Offset, staged.Length, Crc32C.Compute(ReplicaFixture.Gather(staged).AsSpan(..^4))));
        return base.CommitStagedWriteAsync(staged, fua, cancellationToken);
    }
}
