using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace ActorCache.Nbd;

/// <summary>What option haggling settled on: the export and the features the transmission phase uses.</summary>
internal sealed record NegotiatedExport(NbdExport Export, bool StructuredReplies, bool BaseAllocation, DirtyBitmap[] DirtyBitmaps);

/// <summary>
/// Fixed-newstyle handshake and option haggling. Not a hot path, so it favours clarity over
/// allocation-free code. Returns null when the client ends the session before transmission.
/// </summary>
/// <param name="attaching">Told the name of an export the client is about to attach to (EXPORT_NAME, GO), before it is opened.</param>
/// <param name="refusal">Set when the node will not serve this client: every option but ABORT is refused with it (NBD_REP_ERR_POLICY).</param>
internal sealed class NbdHandshake(Socket socket, SocketReader reader, INbdExportCatalog catalog, ILogger logger, Action<string> attaching,
    string? refusal = null)
{
    private bool _structured;
    private readonly MetaContextSelection _metaContexts = new(catalog, logger);

    /// <summary>proto.md: a string (an export name among them) MUST be no longer than 4096 bytes.</summary>
    private static readonly string NameTooLong = $"export name longer than {NbdProtocol.MaxNameLength} bytes";

    public async Task<NegotiatedExport?> RunAsync(CancellationToken ct)
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdProtocol.InitMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), (ushort)(HandshakeFlags.FixedNewstyle | HandshakeFlags.NoZeroes));
        await SendAsync(greeting, ct);

        var flagBytes = new byte[4];
        await reader.ReadExactAsync(flagBytes, ct);
        var clientFlags = (ClientFlags)BinaryPrimitives.ReadUInt32BigEndian(flagBytes);
        if ((clientFlags & ~(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes)) != 0 || (clientFlags & ClientFlags.FixedNewstyle) == 0)
            throw new NbdProtocolException($"client flags 0x{(uint)clientFlags:x} are not fixed newstyle");
        var noZeroes = (clientFlags & ClientFlags.NoZeroes) != 0;

        var optionHeader = new byte[16];
        while (true)
        {
            await reader.ReadExactAsync(optionHeader, ct);
            if (BinaryPrimitives.ReadUInt64BigEndian(optionHeader) != NbdProtocol.OptionMagic)
                throw new NbdProtocolException("bad option magic");
            var option = (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(optionHeader.AsSpan(8));
            var length = BinaryPrimitives.ReadUInt32BigEndian(optionHeader.AsSpan(12));
            if (length > NbdProtocol.MaxOptionLength)
                throw new NbdProtocolException($"option {option} carries {length} bytes, more than {NbdProtocol.MaxOptionLength}");
            var data = new byte[length];
            await reader.ReadExactAsync(data, ct);

            if (refusal is not null && option != NbdOption.Abort)
            {
                // The spec's way to turn a client away: error its options until it gives up (EXPORT_NAME cannot be errored).
                if (option == NbdOption.ExportName) throw new NbdProtocolException(refusal);
                await ErrorAsync(option, OptionReply.ErrPolicy, refusal, ct);
                continue;
            }

            switch (option)
            {
                case NbdOption.ExportName:
                {
                    // The spec gives EXPORT_NAME no way to fail politely: an unknown name ends the session.
                    if (data.Length > NbdProtocol.MaxNameLength) throw new NbdProtocolException($"client asked for an export: {NameTooLong}");
                    var name = Encoding.UTF8.GetString(data);
                    attaching(name);
                    var export = await catalog.OpenAsync(name, ct)
                                 ?? throw new NbdProtocolException(catalog.WhyUnavailable(name) is { } why
                                     ? $"client asked for export '{name}', which is unavailable: {why}"
                                     : $"client asked for unknown export '{name}'");
                    try
                    {
                        var negotiated = await NegotiatedAsync(export, ct); // no polite way to fail either: a lost bitmap ends it
                        var reply = new byte[noZeroes ? 10 : 134];
                        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Target.Size);
                        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)TransmissionFlagsFor(export));
                        await SendAsync(reply, ct);
                        return negotiated;
                    }
                    catch
                    {
                        await export.ReleaseAsync();
                        throw;
                    }
                }
                case NbdOption.Abort:
                    await ReplyAsync(option, OptionReply.Ack, [], ct);
                    return null;
                case NbdOption.List:
                    if (length != 0) { await ErrorAsync(option, OptionReply.ErrInvalid, "LIST takes no data", ct); break; }
                    foreach (var export in catalog.List())
                    {
                        var name = Encoding.UTF8.GetBytes(export.Name);
                        var description = Encoding.UTF8.GetBytes(export.Description);
                        var entry = new byte[4 + name.Length + description.Length];
                        BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)name.Length);
                        name.CopyTo(entry, 4);
                        description.CopyTo(entry, 4 + name.Length);
                        await ReplyAsync(option, OptionReply.Server, entry, ct);
                    }
                    await ReplyAsync(option, OptionReply.Ack, [], ct);
                    break;
                case NbdOption.Info:
                case NbdOption.Go:
                {
                    var negotiated = await InfoAsync(option, data, ct);
                    if (negotiated is null) break;
                    if (option == NbdOption.Go) return negotiated;
                    await negotiated.Export.ReleaseAsync(); // INFO only describes it
                    break;
                }
                case NbdOption.StructuredReply:
                    if (length != 0) { await ErrorAsync(option, OptionReply.ErrInvalid, "STRUCTURED_REPLY takes no data", ct); break; }
                    _structured = true;
                    await ReplyAsync(option, OptionReply.Ack, [], ct);
                    break;
                case NbdOption.ListMetaContext:
                case NbdOption.SetMetaContext:
                    await MetaContextAsync(option, data, ct);
                    break;
                default:
                    await ErrorAsync(option, OptionReply.ErrUnsupported, $"option {(uint)option} is not supported", ct);
                    break;
            }
        }
    }

    /// <summary>The export with the contexts the last SET selected for it; dirty bitmaps are computed here, once for the connection.</summary>
    private async Task<NegotiatedExport> NegotiatedAsync(NbdExport export, CancellationToken ct)
    {
        var (baseAllocation, bitmaps) = await _metaContexts.ServeAsync(export, _structured, ct);
        return new NegotiatedExport(export, _structured, baseAllocation, bitmaps);
    }

    private TransmissionFlags TransmissionFlagsFor(NbdExport export)
    {
        var flags = TransmissionFlags.HasFlags | TransmissionFlags.SendFlush | TransmissionFlags.SendFua |
                    TransmissionFlags.SendTrim | TransmissionFlags.SendWriteZeroes | TransmissionFlags.SendCache |
                    TransmissionFlags.SendFastZero |
                    // Every connection sees one volume and FLUSH covers writes from all of them.
                    TransmissionFlags.CanMultiConn;
        if (_structured) flags |= TransmissionFlags.SendDf;
        if (export.ReadOnly) flags |= TransmissionFlags.ReadOnly;
        return flags;
    }

    /// <summary>INFO or GO: opens the export and describes it; null when it was refused (the client was told why).</summary>
    private async Task<NegotiatedExport?> InfoAsync(NbdOption option, byte[] data, CancellationToken ct)
    {
        if (data.Length < 6) { await ErrorAsync(option, OptionReply.ErrInvalid, "option data too short", ct); return null; }
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 6) { await ErrorAsync(option, OptionReply.ErrInvalid, "export name length exceeds the option", ct); return null; }
        if (nameLength > NbdProtocol.MaxNameLength) { await ErrorAsync(option, OptionReply.ErrInvalid, NameTooLong, ct); return null; }
        var name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
        var requestCount = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength));
        if (data.Length != 6 + nameLength + 2 * requestCount)
        {
            await ErrorAsync(option, OptionReply.ErrInvalid, "information request count does not match the option length", ct);
            return null;
        }
        var requests = new HashSet<InfoType>();
        for (var i = 0; i < requestCount; i++)
            requests.Add((InfoType)BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(6 + (int)nameLength + 2 * i)));

        NbdExport? export;
        try
        {
            if (option == NbdOption.Go) attaching(name);
            export = await catalog.OpenAsync(name, ct);
        }
        catch (NbdProtocolException e)
        {
            // Clients show only the error code: the reason goes to the node's log as well.
            logger.LogInformation("NBD client asked for export '{Name}', which cannot be served: {Reason}", name, e.Message);
            await ErrorAsync(option, OptionReply.ErrUnknown, e.Message, ct);
            return null;
        }
        if (export is null)
        {
            await ErrorAsync(option, OptionReply.ErrUnknown, Unknown(name), ct);
            return null;
        }
        NegotiatedExport? negotiated = null;
        string? refused = null;
        try
        {
            try
            {
                // Before the ACK, so GO can still fail politely when a selected bitmap cannot be served any more.
                negotiated = option == NbdOption.Go ? await NegotiatedAsync(export, ct) : new NegotiatedExport(export, _structured, false, []);
            }
            catch (NbdProtocolException e)
            {
                refused = e.Message;
            }
            if (negotiated is not null) await DescribeAsync(option, export, requests, ct);
        }
        catch
        {
            await export.ReleaseAsync();
            throw;
        }
        if (refused is not null)
        {
            await export.ReleaseAsync();
            logger.LogInformation("NBD client asked for export '{Name}', which cannot be served: {Reason}", name, refused);
            await ErrorAsync(option, OptionReply.ErrUnknown, refused, ct);
            return null;
        }
        return negotiated;
    }

    private async Task DescribeAsync(NbdOption option, NbdExport export, HashSet<InfoType> requests, CancellationToken ct)
    {
        var info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, (ushort)InfoType.Export);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Target.Size);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), (ushort)TransmissionFlagsFor(export));
        await ReplyAsync(option, OptionReply.Info, info, ct);

        if (requests.Contains(InfoType.Name))
            await ReplyAsync(option, OptionReply.Info, TypedText(InfoType.Name, export.Name), ct);
        if (requests.Contains(InfoType.Description))
            await ReplyAsync(option, OptionReply.Info, TypedText(InfoType.Description, export.Description), ct);

        // Sent whether asked or not: clients must respect the 512-byte minimum we enforce.
        var blockSize = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(blockSize, (ushort)InfoType.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(2), NbdProtocol.MinBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(6), NbdProtocol.PreferredBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(10), NbdProtocol.MaxPayload);
        await ReplyAsync(option, OptionReply.Info, blockSize, ct);

        await ReplyAsync(option, OptionReply.Ack, [], ct);
    }

    private async Task MetaContextAsync(NbdOption option, byte[] data, CancellationToken ct)
    {
        if (option == NbdOption.SetMetaContext) _metaContexts.Clear(); // replaced even when this SET fails
        if (!_structured)
        {
            await ErrorAsync(option, OptionReply.ErrInvalid, "negotiate STRUCTURED_REPLY before metadata contexts", ct);
            return;
        }
        var span = data.AsSpan();
        if (span.Length < 8) { await ErrorAsync(option, OptionReply.ErrInvalid, "option data too short", ct); return; }
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (nameLength > span.Length - 8) { await ErrorAsync(option, OptionReply.ErrInvalid, "export name length exceeds the option", ct); return; }
        if (nameLength > NbdProtocol.MaxNameLength) { await ErrorAsync(option, OptionReply.ErrInvalid, NameTooLong, ct); return; }
        var name = Encoding.UTF8.GetString(span.Slice(4, (int)nameLength));
        span = span[(4 + (int)nameLength)..];
        var queryCount = BinaryPrimitives.ReadUInt32BigEndian(span);
        span = span[4..];
        var queries = new List<string>();
        for (var i = 0u; i < queryCount; i++)
        {
            if (span.Length < 4) { await ErrorAsync(option, OptionReply.ErrInvalid, "query list is truncated", ct); return; }
            var queryLength = BinaryPrimitives.ReadUInt32BigEndian(span);
            if (queryLength > span.Length - 4) { await ErrorAsync(option, OptionReply.ErrInvalid, "query length exceeds the option", ct); return; }
            queries.Add(Encoding.UTF8.GetString(span.Slice(4, (int)queryLength)));
            span = span[(4 + (int)queryLength)..];
        }
        if (!span.IsEmpty) { await ErrorAsync(option, OptionReply.ErrInvalid, "trailing bytes after the query list", ct); return; }
        // LIST as SET: each bitmap named is computed (a diff of the log) to know whether it can be served, so no more at once
        // than a connection may select.
        if (MetaContextSelection.AsksTooMany(queries))
        {
            await ErrorAsync(option, OptionReply.ErrTooBig, $"name at most {MetaContexts.MaxDirtyBitmaps} dirty bitmaps at once", ct);
            return;
        }

        NbdExport? export;
        try
        {
            export = await catalog.OpenAsync(name, ct); // its Name is the one GO finds again (the empty name is the default export's)
        }
        catch (NbdProtocolException e)
        {
            await ErrorAsync(option, OptionReply.ErrUnknown, e.Message, ct);
            return;
        }
        if (export is null) { await ErrorAsync(option, OptionReply.ErrUnknown, Unknown(name), ct); return; }
        IReadOnlyList<(uint Id, string Name)> contexts;
        try
        {
            contexts = option == NbdOption.ListMetaContext
                // The id of a listed context means nothing: the spec reserves it and asks for zero.
                ? [.. (await _metaContexts.ListAsync(export, queries, ct)).Select(n => (0u, n))]
                : await _metaContexts.SelectAsync(export, queries, ct);
        }
        finally
        {
            await export.ReleaseAsync();
        }

        foreach (var (id, context) in contexts)
        {
            var contextName = Encoding.UTF8.GetBytes(context);
            var reply = new byte[4 + contextName.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, id);
            contextName.CopyTo(reply, 4);
            await ReplyAsync(option, OptionReply.MetaContext, reply, ct);
        }
        await ReplyAsync(option, OptionReply.Ack, [], ct);
    }

    /// <summary>The message for a name that is not served: why, when the catalog knows (an offline volume), else that it does not exist.</summary>
    private string Unknown(string name) =>
        catalog.WhyUnavailable(name) is { } why ? $"export '{name}' is unavailable: {why}" : $"no export named '{name}'";

    private static byte[] TypedText(InfoType type, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var info = new byte[2 + bytes.Length];
        BinaryPrimitives.WriteUInt16BigEndian(info, (ushort)type);
        bytes.CopyTo(info, 2);
        return info;
    }

    private Task ErrorAsync(NbdOption option, OptionReply error, string message, CancellationToken ct)
    {
        logger.LogDebug("NBD option {Option} refused: {Message}", option, message);
        return ReplyAsync(option, error, Encoding.UTF8.GetBytes(message), ct);
    }

    private async Task ReplyAsync(NbdOption option, OptionReply type, byte[] data, CancellationToken ct)
    {
        var frame = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(frame, NbdProtocol.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(12), (uint)type);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(16), (uint)data.Length);
        data.CopyTo(frame, 20);
        await SendAsync(frame, ct);
    }

    private async Task SendAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct)
    {
        while (!bytes.IsEmpty)
        {
            var n = await socket.SendAsync(bytes, SocketFlags.None, ct);
            bytes = bytes[n..];
        }
    }
}

/// <summary>The peer broke the protocol; its connection ends, nothing else is affected.</summary>
public sealed class NbdProtocolException(string message) : Exception(message);
