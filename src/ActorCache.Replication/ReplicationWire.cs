using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using ActorCache.Blocks;

namespace ActorCache.Replication;

/// <summary>What a frame from primary to secondary carries.</summary>
internal enum FrameKind : ushort
{
    /// <summary>A log batch: its header block exactly as the primary wrote it, then its data blocks.</summary>
    Batch = 1,
    /// <summary>Resync data: a run of blocks read from the primary's volume.</summary>
    ResyncData = 2,
    /// <summary>A resync starts: the secondary records itself Inconsistent before applying anything of it.</summary>
    ResyncBegin = 3,
    /// <summary>The resync is complete: the secondary flushes, then is UpToDate through the batch sequence in <see cref="FrameHeader.Block"/>.</summary>
    ResyncDone = 4,
}

/// <summary>What an acknowledgement from secondary to primary says about a frame and every frame before it.</summary>
internal enum AckKind : ushort
{
    /// <summary>Read and verified (in the secondary's memory).</summary>
    Received = 1,
    /// <summary>Applied and covered by a completed flush on the secondary.</summary>
    Durable = 2,
}

/// <summary>
/// The 32-byte frame header, little-endian: kind (2), reserved (2), payload blocks (4), frame id (8),
/// block (8: first block of resync data; for ResyncDone the batch sequence it completes through),
/// payload CRC32C (4: resync data only), header CRC32C (4, over the first 28 bytes). A payload of
/// <see cref="PayloadBlocks"/> 4 KiB blocks follows.
/// </summary>
internal readonly record struct FrameHeader(FrameKind Kind, int PayloadBlocks, long FrameId, long Block, uint PayloadCrc)
{
    public const int Size = 32;

    public void Write(Span<byte> span)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)Kind);
        BinaryPrimitives.WriteUInt16LittleEndian(span[2..], 0);
        BinaryPrimitives.WriteInt32LittleEndian(span[4..], PayloadBlocks);
        BinaryPrimitives.WriteInt64LittleEndian(span[8..], FrameId);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], Block);
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], PayloadCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(span[28..], Crc32C.Compute(span[..28]));
    }

    public static bool TryRead(ReadOnlySpan<byte> span, out FrameHeader header)
    {
        header = default;
        if (BinaryPrimitives.ReadUInt32LittleEndian(span[28..]) != Crc32C.Compute(span[..28])) return false;
        var kind = (FrameKind)BinaryPrimitives.ReadUInt16LittleEndian(span);
        if (kind is < FrameKind.Batch or > FrameKind.ResyncDone) return false;
        header = new FrameHeader(kind, BinaryPrimitives.ReadInt32LittleEndian(span[4..]), BinaryPrimitives.ReadInt64LittleEndian(span[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(span[16..]), BinaryPrimitives.ReadUInt32LittleEndian(span[24..]));
        return header.PayloadBlocks >= 0;
    }
}

/// <summary>Acknowledgement, 16 bytes: kind (2), reserved (2), CRC32C of the rest (4), frame id (8).</summary>
internal static class Ack
{
    public const int Size = 16;

    public static void Write(Span<byte> span, AckKind kind, long frameId)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)kind);
        BinaryPrimitives.WriteUInt16LittleEndian(span[2..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(span[8..], frameId);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], Checksum(span));
    }

    public static bool TryRead(ReadOnlySpan<byte> span, out AckKind kind, out long frameId)
    {
        kind = (AckKind)BinaryPrimitives.ReadUInt16LittleEndian(span);
        frameId = BinaryPrimitives.ReadInt64LittleEndian(span[8..]);
        return BinaryPrimitives.ReadUInt32LittleEndian(span[4..]) == Checksum(span) && kind is AckKind.Received or AckKind.Durable;
    }

    private static uint Checksum(ReadOnlySpan<byte> span) => Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, span[..4]), span[8..16]);
}

/// <summary>
/// The handshake. Primary: magic "ACREPL01" (8), version (2), name length (2), epoch of its replica set (4), primary volume id (16),
/// and in version 2: the primary's incarnation (16), history basis volume id (16, empty: none), basis incarnation (16), basis
/// sequence (8); then the volume name (UTF-8). Secondary: magic (8), status (2), disk (1), has state (1), reserved (4), applied
/// sequence (8), primary volume id of its state (16), status text length (2), has history answer (1), reserved (5), and in
/// version 2: answer sequence (8), answer run count (4), reserved (4); then the text, then the answer's runs of changed blocks
/// (first block (8), blocks (4) each). A secondary answers in the version it was greeted in; a version 2 primary that is told
/// the version is not supported greets in version 1 (no incarnation, no narrowing) from then on, so nodes of both versions
/// replicate during a rolling update.
/// </summary>
internal static class Handshake
{
    public const ulong Magic = 0x31304C5045524341; // "ACREPL01"
    public const ushort Version = 2, Version1 = 1;
    public const int HelloSizeV1 = 32, HelloSize = 88, ReplySizeV1 = 48, ReplySize = 64, RunSize = 12;

    public static int HelloSizeOf(ushort version) => version == Version1 ? HelloSizeV1 : HelloSize;

    public static int ReplySizeOf(ushort version) => version == Version1 ? ReplySizeV1 : ReplySize;

    /// <summary>Beyond this many runs an answer is not sent (the resync is full): it would not be much smaller.</summary>
    public const int MaxRuns = 1 << 20;

    public enum Status : ushort
    {
        Accepted = 0,
        UnknownVolume = 1,
        BadHello = 2,
        VersionMismatch = 3,
    }

    public static byte[] Hello(string volume, Guid primaryVolumeId, long epoch = 0, Guid incarnation = default, HistoryBasis? basis = null, ushort version = Version)
    {
        var name = Encoding.UTF8.GetBytes(volume);
        if (name.Length > ushort.MaxValue) throw new ArgumentException("volume name too long", nameof(volume));
        var size = HelloSizeOf(version);
        var hello = new byte[size + name.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(hello, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(8), version);
        BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(10), (ushort)name.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(hello.AsSpan(12), (uint)epoch);
        primaryVolumeId.TryWriteBytes(hello.AsSpan(16, 16));
        if (version != Version1)
        {
            incarnation.TryWriteBytes(hello.AsSpan(32, 16));
            (basis?.VolumeId ?? Guid.Empty).TryWriteBytes(hello.AsSpan(48, 16));
            (basis?.Incarnation ?? Guid.Empty).TryWriteBytes(hello.AsSpan(64, 16));
            BinaryPrimitives.WriteInt64LittleEndian(hello.AsSpan(80), basis?.Sequence ?? 0);
        }
        name.CopyTo(hello, size);
        return hello;
    }

    /// <summary>The primary's incarnation a version 2 hello carries (empty in version 1).</summary>
    public static Guid IncarnationOf(ReadOnlySpan<byte> hello) => hello.Length >= HelloSize ? new Guid(hello.Slice(32, 16)) : Guid.Empty;

    /// <summary>The history basis a version 2 hello carries, or null.</summary>
    public static HistoryBasis? BasisOf(ReadOnlySpan<byte> hello)
    {
        if (hello.Length < HelloSize) return null;
        var volume = new Guid(hello.Slice(48, 16));
        return volume == Guid.Empty ? null : new HistoryBasis(volume, new Guid(hello.Slice(64, 16)), BinaryPrimitives.ReadInt64LittleEndian(hello[80..]));
    }

    public static byte[] Reply(Status status, ReplicaState? state, string? text, HistoryAnswer? answer = null, ushort version = Version)
    {
        var message = Encoding.UTF8.GetBytes(text ?? "");
        var runs = answer is null || version == Version1 ? null : Runs(answer.Blocks);
        if (runs is { Count: > MaxRuns }) runs = null;
        var textLength = Math.Min(message.Length, 4096);
        var size = ReplySizeOf(version);
        var reply = new byte[size + textLength + (runs?.Count ?? 0) * RunSize];
        BinaryPrimitives.WriteUInt64LittleEndian(reply, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(8), (ushort)status);
        reply[10] = (byte)(state?.Disk ?? PeerDisk.Unknown);
        reply[11] = state is null ? (byte)0 : (byte)1;
        BinaryPrimitives.WriteInt64LittleEndian(reply.AsSpan(16), state?.AppliedSequence ?? 0);
        (state?.PrimaryVolumeId ?? Guid.Empty).TryWriteBytes(reply.AsSpan(24, 16));
        BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(40), (ushort)textLength);
        message.AsSpan(0, textLength).CopyTo(reply.AsSpan(size));
        if (runs is not null)
        {
            reply[42] = 1;
            BinaryPrimitives.WriteInt64LittleEndian(reply.AsSpan(48), answer!.Sequence);
            BinaryPrimitives.WriteInt32LittleEndian(reply.AsSpan(56), runs.Count);
            var at = size + textLength;
            foreach (var (start, count) in runs)
            {
                BinaryPrimitives.WriteInt64LittleEndian(reply.AsSpan(at), start);
                BinaryPrimitives.WriteInt32LittleEndian(reply.AsSpan(at + 8), count);
                at += RunSize;
            }
        }
        return reply;
    }

    /// <summary>The set blocks (one bit each) as runs of consecutive ones, a word at a time.</summary>
    public static List<(long Start, int Count)> Runs(System.Collections.BitArray blocks)
    {
        var words = new int[(blocks.Length + 31) / 32];
        blocks.CopyTo(words, 0);
        var runs = new List<(long, int)>();
        long start = -1;
        var count = 0;
        for (var w = 0; w < words.Length; w++)
        {
            var word = (uint)words[w];
            var first = (long)w * 32;
            if (word == uint.MaxValue && count > 0 && start + count == first)
            {
                count += 32; // a whole word continuing the run
                continue;
            }
            for (var bit = 0; word != 0 && bit < 32; bit++)
            {
                if ((word & (1u << bit)) == 0) continue;
                var block = first + bit;
                if (count > 0 && start + count == block) count++;
                else
                {
                    if (count > 0) runs.Add((start, count));
                    (start, count) = (block, 1);
                }
            }
        }
        if (count > 0) runs.Add((start, count));
        return runs;
    }

    /// <summary>How many blocks are set.</summary>
    public static long Count(System.Collections.BitArray blocks)
    {
        var words = new int[(blocks.Length + 31) / 32];
        blocks.CopyTo(words, 0);
        return words.Sum(w => (long)System.Numerics.BitOperations.PopCount((uint)w));
    }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes; false when the peer closed the connection first.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))] // once per frame: no allocation when it waits
    public static async ValueTask<bool> ReadExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer[read..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0) return false;
            read += n;
        }
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        while (buffer.Length > 0)
        {
            var n = await socket.SendAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            buffer = buffer[n..];
        }
    }
}
