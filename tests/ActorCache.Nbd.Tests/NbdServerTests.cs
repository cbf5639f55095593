using System.Buffers.Binary;
using System.Text;
using ActorCache.Blocks;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Nbd.Tests;

/// <summary>The front against a real sparse-file backing, driven byte by byte over a Unix socket.</summary>
public sealed class NbdServerTests : IAsyncLifetime
{
    private const long Size = 8 << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-nbd-").FullName;
    private FileBacking _rw = null!, _ro = null!;
    private NbdServer _server = null!;
    private string Socket => Path.Combine(_dir, "nbd.sock");

    private sealed class Catalog(params NbdExport[] exports) : INbdExportCatalog
    {
        public bool TryGet(string name, out NbdExport export)
        {
            export = exports.FirstOrDefault(e => e.Name == (name.Length == 0 ? exports[0].Name : name))!;
            return export is not null;
        }

        public IReadOnlyList<NbdExport> List() => exports;
    }

    public async Task InitializeAsync()
    {
        _rw = FileBacking.Open(Path.Combine(_dir, "rw.img"), Size, create: true);
        await File.WriteAllBytesAsync(Path.Combine(_dir, "ro.img"), new byte[Size]);
        _ro = FileBacking.Open(Path.Combine(_dir, "ro.img"), Size, create: false, readOnly: true);
        var catalog = new Catalog(new NbdExport("vol0", "the volume", _rw, false), new NbdExport("ro", "read only", _ro, true));
        _server = TestServer.Start(catalog, Socket);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _rw.DisposeAsync();
        await _ro.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private Task<RawNbdClient> Connect() => RawNbdClient.ConnectAsync(Socket);

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private async Task AssertServesNormally()
    {
        await using var other = await Connect();
        await other.GoAsync("vol0");
        await other.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 77);
        var chunk = await other.ReadChunkAsync();
        Assert.Equal(ReplyType.OffsetData, chunk.Type);
        Assert.Equal(77ul, chunk.Cookie);
    }

    [Fact]
    public async Task Greeting_offers_fixed_newstyle_and_no_zeroes()
    {
        await using var client = await Connect();
        Assert.Equal((ushort)3, await client.ReadGreetingAsync());
    }

    [Fact]
    public async Task Client_without_fixed_newstyle_is_dropped()
    {
        await using var client = await Connect();
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(0x80);
        Assert.True(await client.IsClosedByServerAsync());
        await AssertServesNormally();
    }

    [Fact]
    public async Task Garbage_handshake_loses_only_that_connection()
    {
        await using var client = await Connect();
        await client.StartAsync();
        await client.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        Assert.True(await client.IsClosedByServerAsync());
        await AssertServesNormally();
    }

    [Fact]
    public async Task Absurdly_long_option_is_dropped()
    {
        await using var client = await Connect();
        await client.StartAsync();
        await client.SendAsync([.. RawNbdClient.U64(NbdProtocol.OptionMagic), .. RawNbdClient.U32(1), .. RawNbdClient.U32(uint.MaxValue)]);
        Assert.True(await client.IsClosedByServerAsync());
        await AssertServesNormally();
    }

    [Fact]
    public async Task Unknown_option_gets_err_unsup_and_negotiation_continues()
    {
        await using var client = await Connect();
        await client.StartAsync();
        await client.SendOptionAsync((NbdOption)99, [1, 2, 3]);
        Assert.Equal(OptionReply.ErrUnsupported, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.StartTls, []);
        Assert.Equal(OptionReply.ErrUnsupported, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.List, []);
        var names = new List<string>();
        while (true)
        {
            var (_, type, data) = await client.ReadOptionReplyAsync();
            if (type == OptionReply.Ack) break;
            Assert.Equal(OptionReply.Server, type);
            names.Add(Encoding.UTF8.GetString(data, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(data)));
        }
        Assert.Equal(["vol0", "ro"], names);
    }

    [Fact]
    public async Task Info_reports_name_description_and_block_sizes_and_unknown_export_is_err_unknown()
    {
        await using var client = await Connect();
        await client.StartAsync();
        await client.SendOptionAsync(NbdOption.Info, RawNbdClient.NameAndInfos("nope"));
        Assert.Equal(OptionReply.ErrUnknown, (await client.ReadOptionReplyAsync()).Type);

        await client.SendOptionAsync(NbdOption.Info, RawNbdClient.NameAndInfos("", InfoType.Name, InfoType.Description, InfoType.BlockSize));
        var infos = new Dictionary<InfoType, byte[]>();
        while (true)
        {
            var (_, type, data) = await client.ReadOptionReplyAsync();
            if (type == OptionReply.Ack) break;
            infos[(InfoType)BinaryPrimitives.ReadUInt16BigEndian(data)] = data;
        }
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(infos[InfoType.Export].AsSpan(2)));
        Assert.Equal("vol0", Encoding.UTF8.GetString(infos[InfoType.Name].AsSpan(2)));
        Assert.Equal("the volume", Encoding.UTF8.GetString(infos[InfoType.Description].AsSpan(2)));
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32BigEndian(infos[InfoType.BlockSize].AsSpan(2)));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(infos[InfoType.BlockSize].AsSpan(6)));
        Assert.Equal(32u << 20, BinaryPrimitives.ReadUInt32BigEndian(infos[InfoType.BlockSize].AsSpan(10)));
    }

    [Fact]
    public async Task Malformed_info_is_err_invalid()
    {
        await using var client = await Connect();
        await client.StartAsync();
        await client.SendOptionAsync(NbdOption.Go, [0, 0, 0, 50, 1, 2]); // name longer than the option
        Assert.Equal(OptionReply.ErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.StructuredReply, [1]);
        Assert.Equal(OptionReply.ErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.SetMetaContext, RawNbdClient.MetaQuery("vol0", MetaContexts.BaseAllocation));
        Assert.Equal(OptionReply.ErrInvalid, (await client.ReadOptionReplyAsync()).Type); // before STRUCTURED_REPLY

        // A name past the spec's 4096 bytes is invalid, not merely unknown; the client may go on.
        var tooLong = new string('v', NbdProtocol.MaxNameLength + 1);
        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos(tooLong));
        var refused = await client.ReadOptionReplyAsync();
        Assert.Equal(OptionReply.ErrInvalid, refused.Type);
        Assert.Contains("export name longer than 4096 bytes", Encoding.UTF8.GetString(refused.Data));
        await client.SendOptionAsync(NbdOption.StructuredReply, []);
        Assert.Equal(OptionReply.Ack, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.ListMetaContext, RawNbdClient.MetaQuery(tooLong));
        Assert.Equal(OptionReply.ErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos("vol0"));
        while ((await client.ReadOptionReplyAsync()).Type != OptionReply.Ack) { }
    }

    [Fact]
    public async Task Meta_contexts_list_and_set_base_allocation()
    {
        await using var client = await Connect();
        await client.StartAsync();
        await client.SendOptionAsync(NbdOption.StructuredReply, []);
        Assert.Equal(OptionReply.Ack, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.ListMetaContext, RawNbdClient.MetaQuery("vol0"));
        var reply = await client.ReadOptionReplyAsync();
        Assert.Equal(OptionReply.MetaContext, reply.Type);
        Assert.Equal(MetaContexts.BaseAllocation, Encoding.UTF8.GetString(reply.Data.AsSpan(4)));
        Assert.Equal(OptionReply.Ack, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(NbdOption.SetMetaContext, RawNbdClient.MetaQuery("vol0", "qemu:dirty-bitmap:x"));
        Assert.Equal(OptionReply.Ack, (await client.ReadOptionReplyAsync()).Type); // nothing matched
        await client.SendOptionAsync(NbdOption.SetMetaContext, RawNbdClient.MetaQuery("nope", MetaContexts.BaseAllocation));
        Assert.Equal(OptionReply.ErrUnknown, (await client.ReadOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task Export_name_with_no_zeroes_answers_ten_bytes_and_unknown_name_closes()
    {
        await using (var client = await Connect())
        {
            await client.StartAsync();
            await client.SendOptionAsync(NbdOption.ExportName, Encoding.UTF8.GetBytes("vol0"));
            var reply = await client.ReadAsync(10);
            Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
            var flags = (TransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8));
            Assert.True(flags.HasFlag(TransmissionFlags.CanMultiConn));
            await client.SendRequestAsync(NbdCommand.Flush, 0, 0, cookie: 5);
            Assert.Equal((NbdError.None, 5ul), await client.ReadSimpleReplyAsync());
        }
        await using (var client = await Connect())
        {
            await client.StartAsync();
            await client.SendOptionAsync(NbdOption.ExportName, Encoding.UTF8.GetBytes("nope"));
            Assert.True(await client.IsClosedByServerAsync());
        }
    }

    [Fact]
    public async Task Transmission_flags_advertise_every_capability()
    {
        await using var client = await Connect();
        var flags = await client.GoAsync("vol0");
        foreach (var flag in new[]
                 {
                     TransmissionFlags.HasFlags, TransmissionFlags.SendFlush, TransmissionFlags.SendFua, TransmissionFlags.SendTrim,
                     TransmissionFlags.SendWriteZeroes, TransmissionFlags.SendDf, TransmissionFlags.CanMultiConn,
                     TransmissionFlags.SendCache, TransmissionFlags.SendFastZero,
                 })
            Assert.True(flags.HasFlag(flag), $"{flag} missing");
        Assert.False(flags.HasFlag(TransmissionFlags.ReadOnly));
        await using var ro = await Connect();
        Assert.True((await ro.GoAsync("ro")).HasFlag(TransmissionFlags.ReadOnly));
    }

    [Fact]
    public async Task Write_then_read_round_trips_with_simple_and_structured_replies()
    {
        var data = Pattern(128 << 10, 1); // larger than the inline request buffer
        await using (var client = await Connect())
        {
            await client.GoAsync("vol0", structured: false);
            await client.SendRequestAsync(NbdCommand.Write, 4096, (uint)data.Length, cookie: 1, CommandFlags.Fua, data);
            Assert.Equal((NbdError.None, 1ul), await client.ReadSimpleReplyAsync());
            await client.SendRequestAsync(NbdCommand.Read, 4096, (uint)data.Length, cookie: 2);
            Assert.Equal((NbdError.None, 2ul), await client.ReadSimpleReplyAsync());
            Assert.Equal(data, await client.ReadAsync(data.Length));
        }
        await using (var client = await Connect())
        {
            await client.GoAsync("vol0");
            await client.SendRequestAsync(NbdCommand.Read, 4096, (uint)data.Length, cookie: 3, CommandFlags.DontFragment);
            var chunk = await client.ReadChunkAsync();
            Assert.Equal(ReplyType.OffsetData, chunk.Type);
            Assert.Equal(ReplyFlags.Done, chunk.Flags);
            Assert.Equal(4096ul, BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload));
            Assert.Equal(data, chunk.Payload[8..]);
        }
    }

    [Fact]
    public async Task Each_bad_request_gets_its_error_and_the_connection_keeps_working()
    {
        await using var client = await Connect();
        await client.GoAsync("vol0");
        var cases = new (NbdCommand Command, ulong Offset, uint Length, CommandFlags Flags, byte[]? Payload, NbdError Expected)[]
        {
            (NbdCommand.Read, Size, 512, 0, null, NbdError.Inval),
            (NbdCommand.Read, 100, 512, 0, null, NbdError.Inval),
            (NbdCommand.Write, Size - 512, 1024, 0, new byte[1024], NbdError.NoSpc),
            (NbdCommand.Write, 1, 512, 0, new byte[512], NbdError.Inval),
            (NbdCommand.Write, 0, 512, (CommandFlags)0x4000, new byte[512], NbdError.Inval),
            (NbdCommand.WriteZeroes, Size, 4096, 0, null, NbdError.NoSpc),
            (NbdCommand.Trim, Size, 4096, 0, null, NbdError.Inval),
            ((NbdCommand)77, 0, 512, 0, null, NbdError.Inval),
            (NbdCommand.Read, 0, (32u << 20) + 4096, 0, null, NbdError.Inval),
            (NbdCommand.Write, 0, (32u << 20) + 4096, 0, new byte[(32 << 20) + 4096], NbdError.Inval),
        };
        ulong cookie = 100;
        foreach (var c in cases)
        {
            await client.SendRequestAsync(c.Command, c.Offset, c.Length, ++cookie, c.Flags, c.Payload);
            var (error, replyCookie) = await client.ReadAnyReplyAsync();
            Assert.Equal(cookie, replyCookie);
            Assert.True(c.Expected == error, $"{c.Command} {c.Offset}+{c.Length}: expected {c.Expected}, got {error}");
        }
        // Nothing from the refused writes reached the volume.
        var read = new byte[4096];
        await _rw.ReadAsync(0, read);
        Assert.All(read, b => Assert.Equal(0, b));
        await client.SendRequestAsync(NbdCommand.Flush, 0, 0, cookie: 999);
        Assert.Equal((NbdError.None, 999ul), await client.ReadAnyReplyAsync());
    }

    [Fact]
    public async Task Writes_to_a_read_only_export_are_eperm()
    {
        await using var client = await Connect();
        await client.GoAsync("ro");
        await client.SendRequestAsync(NbdCommand.Write, 0, 512, cookie: 1, payload: Pattern(512, 2));
        Assert.Equal((NbdError.Perm, 1ul), await client.ReadAnyReplyAsync());
        await client.SendRequestAsync(NbdCommand.Trim, 0, 512, cookie: 2);
        Assert.Equal((NbdError.Perm, 2ul), await client.ReadAnyReplyAsync());
        await client.SendRequestAsync(NbdCommand.WriteZeroes, 0, 512, cookie: 3);
        Assert.Equal((NbdError.Perm, 3ul), await client.ReadAnyReplyAsync());
        await client.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 4);
        Assert.Equal((NbdError.None, 4ul), await client.ReadAnyReplyAsync());
    }

    [Fact]
    public async Task Bad_request_magic_closes_only_that_connection()
    {
        await using var client = await Connect();
        await client.GoAsync("vol0");
        await client.SendAsync(new byte[28]);
        Assert.True(await client.IsClosedByServerAsync());
        await AssertServesNormally();
    }

    [Fact]
    public async Task Absurd_write_length_closes_only_that_connection()
    {
        await using var client = await Connect();
        await client.GoAsync("vol0");
        await client.SendRequestAsync(NbdCommand.Write, 0, uint.MaxValue & ~511u, cookie: 1);
        Assert.True(await client.IsClosedByServerAsync());
        await AssertServesNormally();
    }

    [Fact]
    public async Task Truncated_write_never_reaches_the_volume()
    {
        await using (var client = await Connect())
        {
            await client.GoAsync("vol0");
            var header = new byte[NbdProtocol.RequestHeaderSize];
            new NbdRequestHeader(0, NbdCommand.Write, 1, 0, 8192).Write(header);
            await client.SendAsync([.. header, .. Pattern(4096, 3)]); // half the payload, then gone
        }
        await Task.Delay(200);
        var read = new byte[8192];
        await _rw.ReadAsync(0, read);
        Assert.All(read, b => Assert.Equal(0, b));
        await AssertServesNormally();
    }

    [Fact]
    public async Task Many_requests_in_flight_are_all_answered()
    {
        await using var client = await Connect();
        await client.GoAsync("vol0");
        const int count = 200; // more than the per-connection in-flight limit: exercises backpressure
        var batch = new List<byte>();
        for (var i = 0; i < count; i++)
        {
            var header = new byte[NbdProtocol.RequestHeaderSize];
            new NbdRequestHeader(0, NbdCommand.Write, (ulong)i, (ulong)(i * 4096), 4096).Write(header);
            batch.AddRange(header);
            batch.AddRange(Pattern(4096, i));
        }
        var sending = client.SendAsync([.. batch]);
        var cookies = new HashSet<ulong>();
        for (var i = 0; i < count; i++)
        {
            var (error, cookie) = await client.ReadAnyReplyAsync();
            Assert.Equal(NbdError.None, error);
            Assert.True(cookies.Add(cookie));
        }
        await sending;
        for (var i = 0; i < count; i += 37)
        {
            var read = new byte[4096];
            await _rw.ReadAsync(i * 4096, read);
            Assert.Equal(Pattern(4096, i), read);
        }
    }

    [Fact]
    public async Task Block_status_reports_data_and_holes_and_honours_req_one()
    {
        await _rw.WriteAsync(1 << 20, Pattern(1 << 20, 4), fua: false);
        await using var client = await Connect();
        await client.GoAsync("vol0");
        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 4 << 20, cookie: 1);
        var chunk = await client.ReadChunkAsync();
        Assert.Equal(ReplyType.BlockStatus, chunk.Type);
        Assert.Equal(MetaContexts.BaseAllocationId, BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload));
        var extents = Enumerable.Range(0, (chunk.Payload.Length - 4) / 8)
            .Select(i => (Length: BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload.AsSpan(4 + 8 * i)),
                Flags: BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload.AsSpan(8 + 8 * i)))).ToList();
        Assert.Equal([(1u << 20, 3u), (1u << 20, 0u), (2u << 20, 3u)], extents);

        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 4 << 20, cookie: 2, CommandFlags.ReqOne);
        chunk = await client.ReadChunkAsync();
        Assert.Equal(12, chunk.Payload.Length);

        await using var plain = await Connect();
        await plain.GoAsync("vol0", baseAllocation: false);
        await plain.SendRequestAsync(NbdCommand.BlockStatus, 0, 4096, cookie: 3);
        Assert.Equal((NbdError.Inval, 3ul), await plain.ReadAnyReplyAsync());
    }

    [Fact]
    public async Task Trim_and_write_zeroes_read_back_as_zeroes()
    {
        await using var client = await Connect();
        await client.GoAsync("vol0");
        await client.SendRequestAsync(NbdCommand.Write, 0, 65536, cookie: 1, payload: Pattern(65536, 5));
        await client.ReadAnyReplyAsync();
        await client.SendRequestAsync(NbdCommand.Trim, 0, 16384, cookie: 2);
        await client.SendRequestAsync(NbdCommand.WriteZeroes, 16384, 16384, cookie: 3, CommandFlags.NoHole);
        await client.SendRequestAsync(NbdCommand.WriteZeroes, 32768, 16384, cookie: 4, CommandFlags.FastZero);
        for (var i = 0; i < 3; i++) Assert.Equal(NbdError.None, (await client.ReadAnyReplyAsync()).Error);
        var read = new byte[65536];
        await _rw.ReadAsync(0, read);
        Assert.All(read.AsSpan(0, 49152).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(Pattern(65536, 5).AsSpan(49152).ToArray(), read.AsSpan(49152).ToArray());
    }

    [Fact]
    public async Task Disconnect_closes_after_answering_what_is_in_flight()
    {
        await using var client = await Connect();
        await client.GoAsync("vol0");
        await client.SendRequestAsync(NbdCommand.Write, 0, 4096, cookie: 1, payload: Pattern(4096, 6));
        await client.SendRequestAsync(NbdCommand.Disconnect, 0, 0, cookie: 2);
        Assert.Equal((NbdError.None, 1ul), await client.ReadAnyReplyAsync());
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task Connection_churn_leaves_the_server_serving()
    {
        for (var i = 0; i < 50; i++)
        {
            await using var client = await Connect();
            if (i % 2 == 0) await client.ReadGreetingAsync();
        }
        await AssertServesNormally();
    }

    [Fact]
    public async Task Counts_the_clients_of_each_export_and_disconnects_those_of_one()
    {
        await using var first = await Connect();
        await first.GoAsync("vol0");
        await using var second = await Connect();
        await second.GoAsync("vol0");
        await using var other = await Connect();
        await other.GoAsync("ro");
        await using var handshaking = await Connect(); // not attached to anything yet
        await handshaking.ReadGreetingAsync();
        // A client counts once the server has its export, a moment after the client read the reply to its GO.
        Assert.True(SpinWait.SpinUntil(() => _server.ConnectionsTo("vol0") == 2 && _server.ConnectionsTo("ro") == 1, TimeSpan.FromSeconds(30)));
        Assert.Equal(0, _server.ConnectionsTo("nothing"));

        // A request already received is answered before the connection ends.
        await first.SendRequestAsync(NbdCommand.Write, 0, 4096, cookie: 9, payload: Pattern(4096, 8));
        Assert.Equal((NbdError.None, 9ul), await first.ReadAnyReplyAsync());
        Assert.Equal(2, await _server.DisconnectAsync("vol0", "volume deleted", TimeSpan.FromSeconds(5)));
        Assert.True(await first.IsClosedByServerAsync());
        Assert.True(await second.IsClosedByServerAsync());
        Assert.True(SpinWait.SpinUntil(() => _server.ConnectionsTo("vol0") == 0, TimeSpan.FromSeconds(30)));

        // The other export's client is untouched.
        Assert.Equal(1, _server.ConnectionsTo("ro"));
        await other.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 5);
        Assert.Equal(5ul, (await other.ReadChunkAsync()).Cookie);
    }

    /// <summary>A catalog whose opens wait at a gate: the client is in the handshake with the export in hand (or about to be).</summary>
    private sealed class GatedCatalog(NbdExport export) : INbdExportCatalog
    {
        public readonly SemaphoreSlim Entered = new(0);
        public readonly TaskCompletionSource Open = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool TryGet(string name, out NbdExport found)
        {
            found = export;
            return name.Length == 0 || name == export.Name;
        }

        public async ValueTask<NbdExport?> OpenAsync(string name, CancellationToken cancellationToken)
        {
            var found = TryGet(name, out var e) ? e : null; // looked up before the withdrawal
            Entered.Release();
            await Open.Task.WaitAsync(cancellationToken);
            return found;
        }

        public IReadOnlyList<NbdExport> List() => [export];
    }

    [Theory]
    [InlineData("vol0")]
    [InlineData("")] // the default export's
    public async Task A_client_opening_the_export_in_its_handshake_is_disconnected_too(string asked)
    {
        var catalog = new GatedCatalog(new NbdExport("vol0", "the volume", _rw, false));
        var socket = Path.Combine(_dir, "gated.sock");
        await using var server = TestServer.Start(catalog, socket);
        await using var client = await RawNbdClient.ConnectAsync(socket);
        await client.StartAsync();
        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos(asked));
        Assert.True(await catalog.Entered.WaitAsync(TimeSpan.FromSeconds(5)));

        // The export is withdrawn (the volume demoted or deleted) while the client holds it, not yet attached.
        Assert.Equal(0, server.ConnectionsTo("vol0"));
        Assert.Equal(1, await server.DisconnectAsync("vol0", "volume demoted", TimeSpan.FromSeconds(5)));
        catalog.Open.TrySetResult();
        Assert.True(await client.IsClosedByServerAsync(), "the client attached to an export withdrawn while it negotiated");
        Assert.Equal(0, server.ConnectionsTo("vol0"));
    }

    [Fact]
    public async Task A_client_past_the_connection_limit_is_told_why_and_the_others_are_served()
    {
        var socket = Path.Combine(_dir, "limited.sock");
        NbdListenAddress.TryParse($"unix:{socket}", out var address, out _);
        await using var server = new NbdServer(new Catalog(new NbdExport("vol0", "the volume", _rw, false)),
            new NbdServerOptions { Listen = [address!], HandshakeTimeout = TimeSpan.FromSeconds(5), MaxConnections = 2 }, NullLogger<NbdServer>.Instance);
        server.Start();
        await using var first = await RawNbdClient.ConnectAsync(socket);
        await first.GoAsync("vol0");
        var second = await RawNbdClient.ConnectAsync(socket);
        await second.GoAsync("vol0");

        await using var third = await RawNbdClient.ConnectAsync(socket);
        await third.StartAsync();
        await third.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos("vol0"));
        var refused = await third.ReadOptionReplyAsync();
        Assert.Equal(OptionReply.ErrPolicy, refused.Type);
        Assert.Contains("the node serves its limit of 2 NBD connections (actorcache.nbd.max-connections)", Encoding.UTF8.GetString(refused.Data));
        await third.SendOptionAsync(NbdOption.List, []); // every option is refused, not only GO
        Assert.Equal(OptionReply.ErrPolicy, (await third.ReadOptionReplyAsync()).Type);

        // The clients served go on; once one leaves, a new one is served, although the refused one is still there.
        await first.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 3);
        Assert.Equal(3ul, (await first.ReadChunkAsync()).Cookie);
        await second.DisposeAsync();
        // Its place is free once its connection's task has ended.
        Assert.True(SpinWait.SpinUntil(() => server.ConnectionsTo("vol0") == 1 && server.Served == 1, TimeSpan.FromSeconds(30)));
        await using var fourth = await RawNbdClient.ConnectAsync(socket);
        await fourth.GoAsync("vol0");
        // Counted once the server has its export, a moment after the client read the reply to its GO (an exact count at once
        // failed now and then).
        Assert.True(SpinWait.SpinUntil(() => server.ConnectionsTo("vol0") == 2, TimeSpan.FromSeconds(30)));

        await third.SendOptionAsync(NbdOption.Abort, []);
        Assert.Equal(OptionReply.Ack, (await third.ReadOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task A_refused_client_that_sends_no_option_is_closed_after_a_short_while_not_the_handshake_timeout()
    {
        var socket = Path.Combine(_dir, "refusing.sock");
        NbdListenAddress.TryParse($"unix:{socket}", out var address, out _);
        await using var server = new NbdServer(new Catalog(new NbdExport("vol0", "the volume", _rw, false)),
            new NbdServerOptions { Listen = [address!], HandshakeTimeout = TimeSpan.FromSeconds(60), MaxConnections = 1 }, NullLogger<NbdServer>.Instance);
        server.Start();
        await using var served = await RawNbdClient.ConnectAsync(socket);
        await served.GoAsync("vol0");
        await using var refused = await RawNbdClient.ConnectAsync(socket);
        await refused.StartAsync();
        // Closed within 10 s (the refusal's 5 s), not after the handshake's 60 s.
        Assert.True(await refused.IsClosedByServerAsync());
        await served.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 1);
        Assert.Equal(1ul, (await served.ReadChunkAsync()).Cookie);
    }

    [Fact]
    public async Task Stop_closes_idle_clients_promptly()
    {
        await using var client = await Connect();
        await client.GoAsync("vol0");
        var started = DateTime.UtcNow;
        await _server.StopAsync(TimeSpan.FromSeconds(5));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(4));
        Assert.True(await client.IsClosedByServerAsync());
    }
}
