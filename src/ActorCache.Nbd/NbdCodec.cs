using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Nbd;

/// <summary>A transmission-phase request header as it arrived (28 bytes, big-endian).</summary>
public readonly record struct NbdRequestHeader(CommandFlags Flags, NbdCommand Command, ulong Cookie, ulong Offset, uint Length)
{
    /// <summary>Parses a header; false when the magic is wrong, which means the stream is out of step and the connection must end.</summary>
    public static bool TryParse(ReadOnlySpan<byte> source, out NbdRequestHeader header)
    {
        if (source.Length < NbdProtocol.RequestHeaderSize || BinaryPrimitives.ReadUInt32BigEndian(source) != NbdProtocol.RequestMagic)
        {
            header = default;
            return false;
        }
        header = new NbdRequestHeader(
            (CommandFlags)BinaryPrimitives.ReadUInt16BigEndian(source[4..]),
            (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[16..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[24..]));
        return true;
    }

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdProtocol.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)Command);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Cookie);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], Offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[24..], Length);
    }
}

/// <summary>Encodes transmission-phase replies into caller-provided spans; returns the bytes written.</summary>
public static class NbdReplyEncoder
{
    public const int OffsetDataHeaderSize = NbdProtocol.StructuredReplyHeaderSize + 8;
    public const int ErrorChunkSize = NbdProtocol.StructuredReplyHeaderSize + 6;
    public const int OffsetHoleChunkSize = NbdProtocol.StructuredReplyHeaderSize + 12;

    public static int WriteSimple(Span<byte> destination, NbdError error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdProtocol.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], cookie);
        return NbdProtocol.SimpleReplyHeaderSize;
    }

    public static int WriteChunkHeader(Span<byte> destination, ReplyFlags flags, ReplyType type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdProtocol.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], length);
        return NbdProtocol.StructuredReplyHeaderSize;
    }

    /// <summary>The header of an OFFSET_DATA chunk that is followed by <paramref name="dataLength"/> bytes of data.</summary>
    public static int WriteOffsetDataHeader(Span<byte> destination, ulong cookie, ulong offset, int dataLength, bool done)
    {
        var n = WriteChunkHeader(destination, done ? ReplyFlags.Done : ReplyFlags.None, ReplyType.OffsetData, cookie, (uint)(8 + dataLength));
        BinaryPrimitives.WriteUInt64BigEndian(destination[n..], offset);
        return OffsetDataHeaderSize;
    }

    public static int WriteOffsetHole(Span<byte> destination, ulong cookie, ulong offset, uint length, bool done)
    {
        var n = WriteChunkHeader(destination, done ? ReplyFlags.Done : ReplyFlags.None, ReplyType.OffsetHole, cookie, 12);
        BinaryPrimitives.WriteUInt64BigEndian(destination[n..], offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[(n + 8)..], length);
        return OffsetHoleChunkSize;
    }

    /// <summary>A final ERROR chunk without a message.</summary>
    public static int WriteErrorChunk(Span<byte> destination, NbdError error, ulong cookie)
    {
        var n = WriteChunkHeader(destination, ReplyFlags.Done, ReplyType.Error, cookie, 6);
        BinaryPrimitives.WriteUInt32BigEndian(destination[n..], (uint)error);
        BinaryPrimitives.WriteUInt16BigEndian(destination[(n + 4)..], 0);
        return ErrorChunkSize;
    }

    public const int BlockStatusHeaderSize = NbdProtocol.StructuredReplyHeaderSize + 4;
    public const int ExtentSize = 8;

    public static int BlockStatusChunkSize(int extents) => BlockStatusHeaderSize + ExtentSize * extents;

    /// <summary>
    /// A BLOCK_STATUS chunk for one metadata context; <paramref name="done"/> on the last of the reply
    /// (one chunk per selected context).
    /// </summary>
    public static int WriteBlockStatus(Span<byte> destination, ulong cookie, uint contextId, ReadOnlySpan<AllocationExtent> extents, bool done = true)
    {
        var n = WriteBlockStatusHeader(destination, cookie, contextId, extents.Length, done);
        foreach (var extent in extents)
            n += WriteExtent(destination[n..], (uint)extent.Length, (uint)extent.State);
        return n;
    }

    /// <summary>The header of a BLOCK_STATUS chunk whose <paramref name="extents"/> descriptors follow it.</summary>
    public static int WriteBlockStatusHeader(Span<byte> destination, ulong cookie, uint contextId, int extents, bool done)
    {
        var n = WriteChunkHeader(destination, done ? ReplyFlags.Done : ReplyFlags.None, ReplyType.BlockStatus, cookie,
            (uint)(4 + ExtentSize * extents));
        BinaryPrimitives.WriteUInt32BigEndian(destination[n..], contextId);
        return BlockStatusHeaderSize;
    }

    /// <summary>One block descriptor of a BLOCK_STATUS chunk: a length and the context's flags for it.</summary>
    public static int WriteExtent(Span<byte> destination, uint length, uint flags)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, length);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], flags);
        return ExtentSize;
    }
}
