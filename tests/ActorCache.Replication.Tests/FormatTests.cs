using System.Text.Json;

namespace ActorCache.Replication.Tests;

/// <summary>The persisted and wire formats on their own: replica state, out-of-sync bitmap, frames, JSON names.</summary>
public sealed class FormatTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("actorcache-replication-format-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void The_replica_state_round_trips_and_a_missing_one_reads_as_null()
    {
        Assert.Null(ReplicaState.Read(_directory));
        var state = new ReplicaState(PeerDisk.UpToDate, 1234, Guid.NewGuid(), DateTimeOffset.FromUnixTimeSeconds(1_800_000_000))
        {
            Checkpoints = [new HistoryCheckpoint(1200, 77), new HistoryCheckpoint(1230, 90)],
        };
        state.Write(_directory);
        var read = ReplicaState.Read(_directory)!;
        Assert.Equal(state with { Checkpoints = read.Checkpoints }, read);
        Assert.Equal(state.Checkpoints, read.Checkpoints);
        Assert.False(File.Exists(Path.Combine(_directory, ReplicaState.FileName + ".tmp")));
        File.WriteAllText(Path.Combine(_directory, ReplicaState.FileName), "{\"disk\": ");
        Assert.Throws<InvalidDataException>(() => ReplicaState.Read(_directory));
    }

    [Fact]
    public void Checkpoints_keep_the_newest_densely_and_thin_out_the_older_ones()
    {
        IReadOnlyList<HistoryCheckpoint> list = [];
        for (var i = 1; i <= 1000; i++) list = HistoryCheckpoint.Append(list, new HistoryCheckpoint(i, i * 10));
        Assert.InRange(list.Count, HistoryCheckpoint.Kept / 2, HistoryCheckpoint.Kept);
        Assert.Equal(1000, list[^1].PrimarySequence);
        Assert.True(list[0].PrimarySequence < 100, $"the oldest kept is {list[0].PrimarySequence}: older history is lost too fast");
        Assert.True(list.Zip(list.Skip(1)).All(p => p.First.PrimarySequence < p.Second.PrimarySequence), "not in order");
        Assert.Same(list, HistoryCheckpoint.Append(list, new HistoryCheckpoint(1000, 1)));
        // The last frames' checkpoints merged in at the connection's end: every one of them kept, in order, the tighter of two.
        var merged = HistoryCheckpoint.Merge(list, [new(990, 9901), new(995, 9950), new(1000, 10001)]);
        Assert.Contains(new HistoryCheckpoint(990, 9901), merged);
        Assert.Contains(new HistoryCheckpoint(995, 9950), merged);
        Assert.Equal(new HistoryCheckpoint(1000, 10001), merged[^1]);
        Assert.InRange(merged.Count, HistoryCheckpoint.Kept / 2, HistoryCheckpoint.Kept);
        Assert.True(merged.Zip(merged.Skip(1)).All(p => p.First.PrimarySequence < p.Second.PrimarySequence), "not in order");
    }

    [Fact]
    public void A_history_answer_round_trips_as_runs()
    {
        var bits = new System.Collections.BitArray(200);
        foreach (var block in new[] { 3, 4, 5, 10, 12, 13, 31, 32, 33 }) bits[block] = true;
        for (var block = 64; block < 160; block++) bits[block] = true; // whole words, and a run across them
        Assert.Equal([(3L, 3), (10L, 1), (12L, 2), (31L, 3), (64L, 96)], Handshake.Runs(bits));
        Assert.Equal(9 + 96, Handshake.Count(bits));
        var basis = new HistoryBasis(Guid.NewGuid(), Guid.NewGuid(), 42);
        var incarnation = Guid.NewGuid();
        var hello = Handshake.Hello("vol", Guid.NewGuid(), 3, incarnation, basis);
        Assert.Equal(basis, Handshake.BasisOf(hello.AsSpan(0, Handshake.HelloSize)));
        Assert.Equal(incarnation, Handshake.IncarnationOf(hello.AsSpan(0, Handshake.HelloSize)));
        Assert.Null(Handshake.BasisOf(Handshake.Hello("vol", Guid.NewGuid(), 3, incarnation).AsSpan(0, Handshake.HelloSize)));
        // Version 1 (an older node): the first 32 bytes, no incarnation, no basis.
        var old = Handshake.Hello("vol", Guid.NewGuid(), 3, incarnation, basis, Handshake.Version1);
        Assert.Equal(Handshake.HelloSizeV1 + 3, old.Length);
        Assert.Equal(Handshake.Version1, BitConverter.ToUInt16(old, 8));
    }

    [Fact]
    public void The_bitmap_finds_runs_and_rejects_a_damaged_file()
    {
        var bitmap = new OutOfSyncBitmap(1000);
        bitmap.Set(10, 5);
        bitmap.Set(63, 3);
        bitmap.Set(998, 10);
        Assert.Equal(5 + 3 + 2, bitmap.Count);
        Assert.True(bitmap.NextRun(0, 100, out var start, out var count));
        Assert.Equal((10L, 5), (start, count));
        Assert.True(bitmap.NextRun(15, 2, out start, out count));
        Assert.Equal((63L, 2), (start, count));
        Assert.True(bitmap.NextRun(66, 100, out start, out count));
        Assert.Equal((998L, 2), (start, count));
        Assert.False(bitmap.NextRun(1000, 100, out _, out _));
        var volume = Guid.NewGuid();
        bitmap.Save(_directory, new OutOfSyncBitmap.Saved(OutOfSyncBitmap.FileFlags.PeerSeen, volume, 77));

        var loaded = new OutOfSyncBitmap(1000);
        Assert.Equal(new OutOfSyncBitmap.Saved(OutOfSyncBitmap.FileFlags.PeerSeen, volume, 77), loaded.Load(_directory));
        Assert.Equal(bitmap.Count, loaded.Count);
        Assert.True(loaded.IsSet(64) && !loaded.IsSet(66));

        var path = Path.Combine(_directory, OutOfSyncBitmap.FileName);
        var bytes = File.ReadAllBytes(path);
        bytes[^1] ^= 1;
        File.WriteAllBytes(path, bytes);
        Assert.Null(new OutOfSyncBitmap(1000).Load(_directory));
        Assert.Null(new OutOfSyncBitmap(2000).Load(_directory));
    }

    [Fact]
    public void A_frame_header_or_ack_with_a_flipped_bit_does_not_verify()
    {
        var head = new byte[FrameHeader.Size];
        new FrameHeader(FrameKind.ResyncData, 3, 42, 1000, 0xABCD).Write(head);
        Assert.True(FrameHeader.TryRead(head, out var read));
        Assert.Equal(new FrameHeader(FrameKind.ResyncData, 3, 42, 1000, 0xABCD), read);
        for (var bit = 0; bit < FrameHeader.Size * 8; bit++)
        {
            head[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(FrameHeader.TryRead(head, out _), $"bit {bit} flipped still verifies");
            head[bit / 8] ^= (byte)(1 << (bit % 8));
        }
        var ack = new byte[Ack.Size];
        Ack.Write(ack, AckKind.Durable, 99);
        Assert.True(Ack.TryRead(ack, out var kind, out var id) && kind == AckKind.Durable && id == 99);
        ack[9] ^= 4;
        Assert.False(Ack.TryRead(ack, out _, out _));
    }

    [Fact]
    public void Status_enums_serialise_with_the_documented_names()
    {
        Assert.Equal("\"standalone\"", JsonSerializer.Serialize(PeerConnection.StandAlone));
        Assert.Equal("\"connected\"", JsonSerializer.Serialize(PeerConnection.Connected));
        Assert.Equal("\"UpToDate\"", JsonSerializer.Serialize(PeerDisk.UpToDate));
        Assert.Equal("\"C\"", JsonSerializer.Serialize(ReplicationProtocol.C));
    }
}

public sealed class BitmapModelTests
{
    [Fact]
    public void Setting_and_clearing_ranges_matches_a_bool_array()
    {
        var random = new Random(4);
        var bitmap = new OutOfSyncBitmap(1000);
        var model = new bool[1000];
        for (var op = 0; op < 2000; op++)
        {
            var start = random.Next(0, 1000);
            var count = random.Next(1, 200);
            var set = random.Next(2) == 0;
            if (set) bitmap.Set(start, count);
            else bitmap.Clear(start, count);
            for (var b = start; b < Math.Min(1000, start + count); b++) model[b] = set;
            Assert.Equal(model.Count(x => x), bitmap.Count);
        }
        for (var b = 0; b < 1000; b++) Assert.Equal(model[b], bitmap.IsSet(b));
        bitmap.SetAll();
        Assert.Equal(1000, bitmap.Count);
    }
}
