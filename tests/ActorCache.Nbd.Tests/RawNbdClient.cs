using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace ActorCache.Nbd.Tests;

/// <summary>
/// A deliberately low-level NBD client for the error paths real clients refuse to produce:
/// it sends exactly the bytes a test asks for and reads replies field by field.
/// </summary>
internal sealed class RawNbdClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _stream.ReadTimeout = 10_000;
    }

    public Socket Socket => _socket;

    public static async Task<RawNbdClient> ConnectAsync(string unixPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(unixPath));
        return new RawNbdClient(socket);
    }

    public async Task<ushort> ReadGreetingAsync()
    {
        var greeting = await ReadAsync(18);
        Assert.Equal(NbdProtocol.InitMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(NbdProtocol.OptionMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public Task SendClientFlagsAsync(uint flags = 3) => SendAsync(U32(flags));

    public async Task StartAsync()
    {
        await ReadGreetingAsync();
        await SendClientFlagsAsync();
    }

    public Task SendOptionAsync(NbdOption option, byte[] data) =>
        SendAsync([.. U64(NbdProtocol.OptionMagic), .. U32((uint)option), .. U32((uint)data.Length), .. data]);

    public async Task<(NbdOption Option, OptionReply Type, byte[] Data)> ReadOptionReplyAsync()
    {
        var header = await ReadAsync(20);
        Assert.Equal(NbdProtocol.OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(header));
        var option = (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
        var type = (OptionReply)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        var data = await ReadAsync((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
        return (option, type, data);
    }

    public static byte[] NameAndInfos(string name, params InfoType[] infos)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var data = new List<byte>([.. U32((uint)n.Length), .. n, .. U16((ushort)infos.Length)]);
        foreach (var info in infos) data.AddRange(U16((ushort)info));
        return [.. data];
    }

    public static byte[] MetaQuery(string export, params string[] queries)
    {
        var n = Encoding.UTF8.GetBytes(export);
        var data = new List<byte>([.. U32((uint)n.Length), .. n, .. U32((uint)queries.Length)]);
        foreach (var q in queries)
        {
            var b = Encoding.UTF8.GetBytes(q);
            data.AddRange(U32((uint)b.Length));
            data.AddRange(b);
        }
        return [.. data];
    }

    /// <summary>Negotiates structured replies (optionally base:allocation) and GO; returns the transmission flags.</summary>
    public async Task<TransmissionFlags> GoAsync(string export, bool structured = true, bool baseAllocation = true)
    {
        await StartAsync();
        if (structured)
        {
            await SendOptionAsync(NbdOption.StructuredReply, []);
            Assert.Equal(OptionReply.Ack, (await ReadOptionReplyAsync()).Type);
            if (baseAllocation)
            {
                await SendOptionAsync(NbdOption.SetMetaContext, MetaQuery(export, MetaContexts.BaseAllocation));
                Assert.Equal(OptionReply.MetaContext, (await ReadOptionReplyAsync()).Type);
                Assert.Equal(OptionReply.Ack, (await ReadOptionReplyAsync()).Type);
            }
        }
        await SendOptionAsync(NbdOption.Go, NameAndInfos(export));
        TransmissionFlags flags = 0;
        while (true)
        {
            var (_, type, data) = await ReadOptionReplyAsync();
            if (type == OptionReply.Ack) return flags;
            Assert.Equal(OptionReply.Info, type);
            if (BinaryPrimitives.ReadUInt16BigEndian(data) == (ushort)InfoType.Export)
                flags = (TransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
        }
    }

    /// <summary>Sends LIST_META_CONTEXT or SET_META_CONTEXT and reads the contexts it answers, up to the ACK (any other reply fails the test).</summary>
    public async Task<List<(uint Id, string Name)>> MetaContextsAsync(NbdOption option, string export, params string[] queries)
    {
        await SendOptionAsync(option, MetaQuery(export, queries));
        var contexts = new List<(uint, string)>();
        while (true)
        {
            var (replyTo, type, data) = await ReadOptionReplyAsync();
            Assert.Equal(option, replyTo);
            if (type == OptionReply.Ack) return contexts;
            Assert.Equal(OptionReply.MetaContext, type);
            contexts.Add((BinaryPrimitives.ReadUInt32BigEndian(data), Encoding.UTF8.GetString(data.AsSpan(4))));
        }
    }

    /// <summary>Negotiates structured replies, selects <paramref name="contexts"/> and GOes; returns the ids the server chose, by name.</summary>
    public async Task<Dictionary<string, uint>> NegotiateAsync(string export, params string[] contexts)
    {
        await StartAsync();
        await SendOptionAsync(NbdOption.StructuredReply, []);
        Assert.Equal(OptionReply.Ack, (await ReadOptionReplyAsync()).Type);
        var selected = (await MetaContextsAsync(NbdOption.SetMetaContext, export, contexts)).ToDictionary(c => c.Name, c => c.Id);
        await SendOptionAsync(NbdOption.Go, NameAndInfos(export));
        while ((await ReadOptionReplyAsync()).Type != OptionReply.Ack) { }
        return selected;
    }

    /// <summary>Reads the chunks of one BLOCK_STATUS reply up to the one marked done: each context's id and extents (length, flags).</summary>
    public async Task<List<(uint ContextId, List<(uint Length, uint Flags)> Extents)>> ReadBlockStatusAsync(ulong cookie)
    {
        var chunks = new List<(uint, List<(uint, uint)>)>();
        while (true)
        {
            var (flags, type, replyCookie, payload) = await ReadChunkAsync();
            Assert.Equal(cookie, replyCookie);
            Assert.Equal(ReplyType.BlockStatus, type);
            var extents = Enumerable.Range(0, (payload.Length - 4) / 8)
                .Select(i => (BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4 + 8 * i)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(8 + 8 * i))))
                .ToList();
            chunks.Add((BinaryPrimitives.ReadUInt32BigEndian(payload), extents));
            if ((flags & ReplyFlags.Done) != 0) return chunks;
        }
    }

    public Task SendRequestAsync(NbdCommand command, ulong offset, uint length, ulong cookie = 1, CommandFlags flags = 0, byte[]? payload = null)
    {
        var header = new byte[NbdProtocol.RequestHeaderSize];
        new NbdRequestHeader(flags, command, cookie, offset, length).Write(header);
        return SendAsync(payload is null ? header : [.. header, .. payload]);
    }

    public async Task<(NbdError Error, ulong Cookie)> ReadSimpleReplyAsync()
    {
        var reply = await ReadAsync(16);
        Assert.Equal(NbdProtocol.SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(reply));
        return ((NbdError)BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)));
    }

    public async Task<(ReplyFlags Flags, ReplyType Type, ulong Cookie, byte[] Payload)> ReadChunkAsync()
    {
        var header = await ReadAsync(20);
        Assert.Equal(NbdProtocol.StructuredReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
        var flags = (ReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4));
        var type = (ReplyType)BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
        var cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
        var payload = await ReadAsync((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
        return (flags, type, cookie, payload);
    }

    /// <summary>Reads one reply of either kind: its error and cookie (structured data/status chunks count as success).</summary>
    public async Task<(NbdError Error, ulong Cookie)> ReadAnyReplyAsync()
    {
        var magic = await ReadAsync(4);
        var kind = BinaryPrimitives.ReadUInt32BigEndian(magic);
        if (kind == NbdProtocol.SimpleReplyMagic)
        {
            var rest = await ReadAsync(12);
            return ((NbdError)BinaryPrimitives.ReadUInt32BigEndian(rest), BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4)));
        }
        Assert.Equal(NbdProtocol.StructuredReplyMagic, kind);
        var header = await ReadAsync(16);
        var type = (ReplyType)BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2));
        var cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(4));
        var payload = await ReadAsync((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)));
        return type == ReplyType.Error ? ((NbdError)BinaryPrimitives.ReadUInt32BigEndian(payload), cookie) : (NbdError.None, cookie);
    }

    public async Task SendAsync(byte[] bytes) => await _stream.WriteAsync(bytes);

    public async Task<byte[]> ReadAsync(int count)
    {
        var buffer = new byte[count];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _stream.ReadExactlyAsync(buffer, timeout.Token);
        return buffer;
    }

    /// <summary>True once the server has closed the connection (a read returns end of stream).</summary>
    public async Task<bool> IsClosedByServerAsync()
    {
        var buffer = new byte[1];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            return await _stream.ReadAsync(buffer, timeout.Token) == 0;
        }
        catch (IOException)
        {
            return true; // reset
        }
    }

    public static byte[] U16(ushort v) { var b = new byte[2]; BinaryPrimitives.WriteUInt16BigEndian(b, v); return b; }
    public static byte[] U32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, v); return b; }
    public static byte[] U64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64BigEndian(b, v); return b; }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}
