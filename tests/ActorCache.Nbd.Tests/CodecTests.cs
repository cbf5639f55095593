using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Nbd.Tests;

public class CodecTests
{
    [Fact]
    public void Request_header_round_trips()
    {
        var header = new NbdRequestHeader(CommandFlags.Fua, NbdCommand.Write, 0x1122334455667788, 4096, 8192);
        var bytes = new byte[NbdProtocol.RequestHeaderSize];
        header.Write(bytes);
        Assert.Equal(0x25609513u, BinaryPrimitives.ReadUInt32BigEndian(bytes));
        Assert.True(NbdRequestHeader.TryParse(bytes, out var parsed));
        Assert.Equal(header, parsed);
    }

    [Fact]
    public void Request_with_bad_magic_or_short_buffer_is_not_parsed()
    {
        var bytes = new byte[NbdProtocol.RequestHeaderSize];
        new NbdRequestHeader(CommandFlags.None, NbdCommand.Read, 1, 0, 512).Write(bytes);
        bytes[0] ^= 0xff;
        Assert.False(NbdRequestHeader.TryParse(bytes, out _));
        Assert.False(NbdRequestHeader.TryParse(bytes.AsSpan(0, 27), out _));
    }

    [Fact]
    public void Simple_reply_layout()
    {
        var bytes = new byte[16];
        Assert.Equal(16, NbdReplyEncoder.WriteSimple(bytes, NbdError.NoSpc, 42));
        Assert.Equal(Convert.FromHexString("67446698" + "0000001C" + "000000000000002A"), bytes);
    }

    [Fact]
    public void Offset_data_chunk_layout()
    {
        var bytes = new byte[NbdReplyEncoder.OffsetDataHeaderSize];
        NbdReplyEncoder.WriteOffsetDataHeader(bytes, 7, 0x1000, 512, done: true);
        Assert.Equal(Convert.FromHexString("668E33EF" + "0001" + "0001" + "0000000000000007" + "00000208" + "0000000000001000"), bytes);
    }

    [Fact]
    public void Error_chunk_layout()
    {
        var bytes = new byte[NbdReplyEncoder.ErrorChunkSize];
        NbdReplyEncoder.WriteErrorChunk(bytes, NbdError.Inval, 9);
        Assert.Equal(Convert.FromHexString("668E33EF" + "0001" + "8001" + "0000000000000009" + "00000006" + "00000016" + "0000"), bytes);
    }

    [Fact]
    public void Offset_hole_chunk_layout()
    {
        var bytes = new byte[NbdReplyEncoder.OffsetHoleChunkSize];
        NbdReplyEncoder.WriteOffsetHole(bytes, 3, 0x200, 0x400, done: false);
        Assert.Equal(Convert.FromHexString("668E33EF" + "0000" + "0002" + "0000000000000003" + "0000000C" + "0000000000000200" + "00000400"), bytes);
    }

    [Fact]
    public void Block_status_chunk_layout()
    {
        var extents = new[] { new AllocationExtent(4096, AllocationState.Data), new AllocationExtent(8192, AllocationState.Hole | AllocationState.Zero) };
        var bytes = new byte[NbdReplyEncoder.BlockStatusChunkSize(2)];
        Assert.Equal(bytes.Length, NbdReplyEncoder.WriteBlockStatus(bytes, 5, MetaContexts.BaseAllocationId, extents));
        Assert.Equal(Convert.FromHexString("668E33EF" + "0001" + "0005" + "0000000000000005" + "00000014" + "00000001" +
                                           "00001000" + "00000000" + "00002000" + "00000003"), bytes);
    }
}
