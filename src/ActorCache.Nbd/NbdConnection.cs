using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using ActorCache.Blocks;
using Microsoft.Extensions.Logging;

namespace ActorCache.Nbd;

/// <summary>
/// One client connection: handshake, then a receive loop that parses requests and runs them (right
/// there when they cannot wait, else on the thread pool), and replies in completion order (many
/// requests in flight). The receive loop sends the replies it completes itself once it has parsed
/// everything one recv brought, so a burst of requests is answered with one send; replies completed
/// elsewhere (the pool, a group commit) are sent by a pool work item, which gathers those that come
/// in together. Any protocol violation ends only this connection.
/// </summary>
internal sealed class NbdConnection : IAsyncDisposable, IThreadPoolWorkItem
{
    private readonly Socket _socket;
    private readonly SocketReader _reader;
    private readonly INbdExportCatalog _catalog;
    private readonly ILogger _logger;
    private readonly NbdServerOptions _options;
    private readonly CancellationTokenSource _stopReading = new();
    private readonly Channel<NbdRequest> _free;
    private readonly ConcurrentQueue<NbdRequest> _replies = new();
    private readonly TaskCompletionSource _allReplied = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _sending; // 1 while one thread owns the socket's send side
    private readonly byte[] _header = GC.AllocateArray<byte>(NbdProtocol.RequestHeaderSize, pinned: true);
    private readonly byte[] _sendBatch = GC.AllocateArray<byte>(256 << 10, pinned: true);
    private int _created;
    private int _pending = 1; // the receive loop itself, plus one per request not yet replied to
    private volatile bool _broken;
    private IBlockTarget _target = null!;
    private NbdSession _session;
    private bool _baseAllocation;
    private DirtyBitmap[] _dirtyBitmaps = [];
    private long _requests; // counted by the receive loop only
    private string? _export;
    private string? _attaching;
    private volatile string _stopReason = "stopping";
    private readonly RepeatedLog _requestFailures;

    private readonly LargeBufferBudget _nodeLargeBuffers;
    // The connection's own budget of large buffers, at most a quarter of the node's: one client that stops reading its replies
    // holds that much, and it takes several such clients to hold all of the node's.
    private readonly LargeBufferBudget _largeBuffers;

    internal NbdConnection(Socket socket, INbdExportCatalog catalog, NbdServerOptions options, LargeBufferBudget nodeLargeBuffers, ILogger logger)
    {
        _nodeLargeBuffers = nodeLargeBuffers;
        _largeBuffers = new LargeBufferBudget(Math.Min(options.MaxLargeBufferBytesPerConnection, nodeLargeBuffers.Limit / 4));
        _socket = socket;
        _reader = new SocketReader(socket, beforeWaiting: SendReplies);
        _catalog = catalog;
        _options = options;
        _logger = logger;
        // A volume failing every request would otherwise log each one (thousands a second).
        _requestFailures = new RepeatedLog(logger, LogLevel.Warning);
        _free = Channel.CreateBounded<NbdRequest>(new BoundedChannelOptions(options.MaxInFlightPerConnection)
        {
            SingleReader = true,
            SingleWriter = false,
        });
    }

    public string Peer { get; init; } = "?";
    /// <summary>Set once the server dropped the client for taking no replies (<see cref="NbdServerOptions.SendTimeout"/>).</summary>
    internal bool Dropped { get; set; }

    /// <summary>Set when the node will not serve this client (too many connections): every option it sends is refused with it.</summary>
    public string? Refusal { get; init; }

    /// <summary>The export this client is attached to, once the handshake has chosen one.</summary>
    public string? Export => Volatile.Read(ref _export);

    /// <summary>
    /// The export the handshake last asked to open (the name is set before the open), until it is attached. A
    /// <see cref="NbdServer.DisconnectAsync"/> that withdrew the export first ends these too: a client that opened it just
    /// before the withdrawal would otherwise attach just after the scan.
    /// </summary>
    public string? Attaching => Volatile.Read(ref _attaching);

    private void OnAttaching(string name)
    {
        var export = name.Length == 0 && _catalog.TryGet("", out var fallback) ? fallback.Name : name; // the empty name is the default export's
        Interlocked.Exchange(ref _attaching, export); // a full fence: the open's read of the catalog comes after it
    }

    /// <summary>
    /// Stops taking new requests; those already received still complete and are answered.
    /// <paramref name="reason"/> goes into the line that logs the client's departure.
    /// </summary>
    public void StopReading(string reason = "stopping")
    {
        _stopReason = reason;
        try
        {
            _stopReading.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // closed already
        }
    }

    /// <summary>How long a client past the connection limit has to read why (it is told at its first option).</summary>
    internal static readonly TimeSpan RefusalTimeout = TimeSpan.FromSeconds(5);

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    public async Task RunAsync()
    {
        NegotiatedExport? negotiated;
        try
        {
            using var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(_stopReading.Token);
            // A client past the connection limit holds one of the few places of those being told why: a short while only, or
            // a handful of clients that never send an option would hold them all (and the next refused go unanswered).
            handshakeTimeout.CancelAfter(Refusal is null ? _options.HandshakeTimeout : Min(_options.HandshakeTimeout, RefusalTimeout));
            negotiated = await new NbdHandshake(_socket, _reader, _catalog, _logger, OnAttaching, Refusal).RunAsync(handshakeTimeout.Token);
        }
        catch (Exception e) when (IsDisconnect(e))
        {
            _logger.LogInformation("NBD client {Peer} left during the handshake: {Reason}", Peer, e.Message);
            return;
        }
        if (negotiated is null) return;

        var export = negotiated.Export;
        Volatile.Write(ref _export, export.Name); // what the export calls itself (a view's name as opened)
        try
        {
            await TransmitAsync(export, negotiated);
        }
        finally
        {
            await export.ReleaseAsync(); // a view of the past opened for this client lets go of its history
        }
    }

    /// <summary>The transmission phase: requests until the client leaves or the node stops reading.</summary>
    private async Task TransmitAsync(NbdExport export, NegotiatedExport negotiated)
    {
        _target = export.Target;
        _baseAllocation = negotiated.BaseAllocation;
        _dirtyBitmaps = negotiated.DirtyBitmaps;
        _session = new NbdSession(_target.Size, export.ReadOnly, negotiated.StructuredReplies,
            MetaContextSelected: _baseAllocation || _dirtyBitmaps.Length > 0);
        _logger.LogInformation("NBD client {Peer} attached to {Export} (structured replies: {Structured}, base:allocation: {Meta}, dirty bitmaps: {Bitmaps})",
            Peer, export.Name, _session.StructuredReplies, _baseAllocation,
            _dirtyBitmaps.Length == 0 ? "none" : string.Join(", ", _dirtyBitmaps.Select(b => b.Name)));

        var attached = Stopwatch.GetTimestamp();
        var how = "disconnected";
        try
        {
            await ReceiveLoopAsync(_stopReading.Token);
        }
        catch (Exception e) when (IsDisconnect(e))
        {
            how = _stopReading.IsCancellationRequested ? $"closed by the node ({_stopReason})" : $"connection ended: {e.Message}";
        }
        finally
        {
            SendReplies(); // any the receive loop held back
            Release(); // the receive loop's own share of _pending
        }
        await _allReplied.Task;
        _requestFailures.Flush();
        _logger.LogInformation("NBD client {Peer} left {Export} after {Duration:0.0} s and {Requests} requests: {How}",
            Peer, export.Name, Stopwatch.GetElapsedTime(attached).TotalSeconds, _requests, how);
    }

    private async Task ReceiveLoopAsync(CancellationToken ct)
    {
        var received = 0;
        while (true)
        {
            // Everything the last recv brought is parsed: answer it before waiting for more.
            if (_reader.Buffered < NbdProtocol.RequestHeaderSize) SendReplies();
            if (++received % FairnessQuantum == 0)
            {
                // Socket completions run inline on the socket engine's thread: a client that always has
                // the next request ready would otherwise keep that thread from every other socket.
                SendReplies();
                await Task.Yield();
            }
            await _reader.ReadExactAsync(_header, ct);
            if (!NbdRequestHeader.TryParse(_header, out var header))
                throw new NbdProtocolException("bad request magic");
            if (header.Command == NbdCommand.Disconnect) return;
            _requests++;

            var request = await RentAsync(ct);
            request.Header = header;
            request.Error = NbdRequestRules.Check(header, _session);

            if (header.Command == NbdCommand.Write)
            {
                if (header.Length > NbdProtocol.MaxPayload)
                {
                    // Refused, but the payload still follows on the wire: skip it to stay in step,
                    // unless it is absurd, in which case the connection is not worth keeping.
                    if (header.Length > 2L * NbdProtocol.MaxPayload)
                        throw new NbdProtocolException($"write of {header.Length} bytes exceeds any sane payload");
                    await _reader.SkipAsync(header.Length, ct);
                }
                else if (request.Error != NbdError.None || !await TryReceiveStagedAsync(request, ct))
                {
                    await ReserveAsync(request, (int)header.Length, ct);
                    try
                    {
                        await _reader.ReadExactAsync(request.Payload, ct);
                    }
                    catch
                    {
                        // Never queued, so never reset otherwise: its large buffer goes back to the pool and to the node's
                        // budget now (a client gone mid-payload would keep that budget from every other client for good).
                        request.Reset();
                        throw;
                    }
                }
            }
            else if (request.Error == NbdError.None && header.Command == NbdCommand.Read)
            {
                await ReserveAsync(request, (int)header.Length, ct);
            }

            Interlocked.Increment(ref _pending);
            if (request.Error != NbdError.None) Complete(request, heldBack: true);
            else if (!TryExecuteWithoutWaiting(request)) ThreadPool.UnsafeQueueUserWorkItem(request, preferLocal: false);
        }
    }

    /// <summary>
    /// Receives a WRITE's payload straight into memory the target offers (the cache's ring slots): the
    /// one copy of the data. False when the target does not stage this write; then nothing was read.
    /// A target that cannot take the write now (e.g. ENOSPC) fails the request, and its payload is skipped.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))] // suspends on every recv that waits: no box per call
    private async ValueTask<bool> TryReceiveStagedAsync(NbdRequest request, CancellationToken ct)
    {
        var header = request.Header;
        try
        {
            var staging = _target.TryStageWriteAsync((long)header.Offset, (int)header.Length, request.Staged, ct);
            if (!staging.IsCompleted) SendReplies(); // waiting for ring space: answer what is done meanwhile
            if (!await staging) return false;
        }
        catch (BlockTargetException e)
        {
            request.Error = ErrorOf(e, header);
            await _reader.SkipAsync(header.Length, ct);
            return true;
        }
        try
        {
            for (var i = 0; i < request.Staged.SegmentCount; i++) await _reader.ReadExactAsync(request.Staged.Segment(i), ct);
        }
        catch
        {
            _target.AbandonStagedWrite(request.Staged);
            throw;
        }
        return true;
    }

    /// <summary>
    /// Gives <paramref name="request"/> its payload buffer; one over 1 MiB waits while the connection holds its budget of them,
    /// or the node its budget of them for all connections.
    /// </summary>
    private ValueTask ReserveAsync(NbdRequest request, int payload, CancellationToken ct)
    {
        if (payload <= NbdRequest.KeptPayload)
        {
            request.Reserve(payload);
            return ValueTask.CompletedTask;
        }
        return ReserveLargeAsync(request, payload, ct);
    }

    private async ValueTask ReserveLargeAsync(NbdRequest request, int payload, CancellationToken ct)
    {
        // What the shared pool will lend: the request and its reply header rounded up to a power of two.
        var lent = (long)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)(NbdRequest.HeaderRoom + payload));
        while (true)
        {
            if (_largeBuffers.TryTake(lent, out var freed))
            {
                if (_nodeLargeBuffers.TryTake(lent, out freed))
                {
                    request.Reserve(payload);
                    var over = request.RentedBytes - lent; // the pool lends powers of two: none, unless that ever changes
                    if (over != 0)
                    {
                        _largeBuffers.Return(-over);
                        _nodeLargeBuffers.Return(-over);
                    }
                    return;
                }
                _largeBuffers.Return(lent); // only this receive loop takes from the connection's budget: nobody waits on it
            }
            SendReplies(); // replies held back would otherwise never give their buffers back
            await freed.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>A request gave its pool array back (its reply went out).</summary>
    internal void LargeBufferReturned(int bytes)
    {
        _largeBuffers.Return(bytes);
        _nodeLargeBuffers.Return(bytes);
    }

    private ValueTask<NbdRequest> RentAsync(CancellationToken ct)
    {
        if (_free.Reader.TryRead(out var request)) return ValueTask.FromResult(request);
        if (_created < _options.MaxInFlightPerConnection)
        {
            _created++;
            return ValueTask.FromResult(new NbdRequest(this));
        }
        SendReplies(); // the ones held back would otherwise never free a request
        return _free.Reader.ReadAsync(ct); // backpressure: wait for a reply to go out
    }

    private const int InlineReadLimit = 64 << 10;
    private const int FairnessQuantum = 256;

    /// <summary>
    /// Runs a request right here on the receive loop when the target can do it without waiting: a READ
    /// of data in memory or the page cache, a staged WRITE (it only publishes ring slots), and the wait of
    /// a staged FUA write or a FLUSH for the log, which is handed over rather than waited for here.
    /// Saves the hand-off to a pool thread, which on a busy machine costs more than the work itself.
    /// Anything else that might wait (disk, a full ring) goes to the pool.
    /// </summary>
    private bool TryExecuteWithoutWaiting(NbdRequest request)
    {
        var header = request.Header;
        switch (header.Command)
        {
            // Large reads are mostly copying: they go to the pool, where several run at once.
            case NbdCommand.Read when header.Length <= InlineReadLimit:
                try
                {
                    if (!_target.TryReadWithoutWaiting((long)header.Offset, request.Payload.Span)) return false;
                }
                catch (Exception)
                {
                    return false; // the pool's path runs it again and reports the error (nothing may leak _pending here)
                }
                Complete(request, heldBack: true);
                return true;
            // Dirty bitmaps only: answered from memory, nothing to wait for.
            case NbdCommand.BlockStatus when !_baseAllocation:
                Complete(request, heldBack: true);
                return true;
            case NbdCommand.Write when request.Staged.StagedBy is not null && (header.Flags & CommandFlags.Fua) == 0:
                var commit = StartCommit(request, flush: false, fua: false);
                // Write acks go out from the pool rather than at the end of the recv: a client that
                // flushes after each write (fio --fsync=1) gets its ack while the receive loop goes
                // on, and then 13% more writes (and less CPU per write) than with held-back acks. When
                // nothing more is buffered the loop would only wait for the socket: the ack goes out
                // right here, without the pool's wake-up (queue depth 1: write, ack, FLUSH).
                if (commit.IsCompletedSuccessfully)
                {
                    commit.GetAwaiter().GetResult(); // hands a pooled source back
                    Complete(request, sendHere: _reader.Buffered == 0);
                }
                else request.ReplyWhenDone(commit); // rare: the volume left write-back under the write
                return true;
            // A FUA write or a FLUSH the target only queues (the write-back cache's group commit) is handed
            // over from here: a hop to the pool first would only add a thread wake-up to every commit's
            // latency. Its completion only sends the reply, so the target may run it where the commit
            // becomes durable. (A mode switch between the check and the call could make this one FUA write
            // or FLUSH write or fdatasync the backing here; that is rare and only slow.)
            case NbdCommand.Write when request.Staged.StagedBy is not null && _target.FlushesWithoutBlocking:
                ReplyWhenDurable(request, StartCommit(request, flush: false, fua: true));
                return true;
            case NbdCommand.Flush when _target.FlushesWithoutBlocking:
                ReplyWhenDurable(request, StartCommit(request, flush: true, fua: false));
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// Starts the commit of a staged write, or a FLUSH, on the receive loop; a FUA write's or a FLUSH's reply may be sent
    /// where it becomes durable. One that throws at once comes back as a faulted task, answered like any failed request:
    /// every request gets its reply.
    /// </summary>
    private ValueTask StartCommit(NbdRequest request, bool flush, bool fua)
    {
        try
        {
            if (!flush && !fua) return _target.CommitStagedWriteAsync(request.Staged, fua: false);
            using (InlineReply.Allow()) return flush ? _target.FlushAsync() : _target.CommitStagedWriteAsync(request.Staged, fua: true);
        }
        catch (Exception e)
        {
            return ValueTask.FromException(e);
        }
    }

    private void ReplyWhenDurable(NbdRequest request, ValueTask commit)
    {
        if (!commit.IsCompleted)
        {
            request.ReplyWhenDone(commit);
            return;
        }
        if (ResultOf(request, commit)) Complete(request, heldBack: true);
        else Complete(request, sendHere: true); // a failure is logged and answered at once, as from the pool
    }

    /// <summary>A commit's outcome is done: it becomes the request's reply (<see cref="NbdRequest.ReplyWhenDone"/>).</summary>
    internal void CompleteCommitted(NbdRequest request, ValueTask commit)
    {
        ResultOf(request, commit);
        Complete(request, sendHere: true);
    }

    /// <summary>Reads a completed commit's result (which hands a pooled source back) into the request: false when it failed.</summary>
    private bool ResultOf(NbdRequest request, ValueTask commit)
    {
        try
        {
            commit.GetAwaiter().GetResult();
            return true;
        }
        catch (Exception e)
        {
            Fail(request, e);
            return false;
        }
    }

    /// <summary>A target's failure becomes the request's NBD error; anything but a <see cref="BlockTargetException"/> is unexpected and logged.</summary>
    private void Fail(NbdRequest request, Exception failure)
    {
        var header = request.Header;
        if (failure is BlockTargetException e)
        {
            request.Error = ErrorOf(e, header);
            return;
        }
        request.Error = NbdError.Io;
        _logger.LogError(failure, "NBD {Command} at {Offset}+{Length} failed unexpectedly", header.Command, header.Offset, header.Length);
    }

    /// <summary>Runs one request against the target on a pool thread, then queues its reply.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask ExecuteAsync(NbdRequest request)
    {
        var header = request.Header;
        try
        {
            switch (header.Command)
            {
                case NbdCommand.Read:
                    await _target.ReadAsync((long)header.Offset, request.Payload);
                    break;
                // A FUA write or a FLUSH only sends its reply once done: the target may complete it inline.
                case NbdCommand.Write when request.Staged.StagedBy is not null:
                    ValueTask commit;
                    using (InlineReply.Allow()) commit = _target.CommitStagedWriteAsync(request.Staged, (header.Flags & CommandFlags.Fua) != 0);
                    await commit;
                    break;
                case NbdCommand.Write:
                    ValueTask write;
                    using (InlineReply.Allow()) write = _target.WriteAsync((long)header.Offset, request.Payload, (header.Flags & CommandFlags.Fua) != 0);
                    await write;
                    break;
                case NbdCommand.Flush:
                    ValueTask flush;
                    using (InlineReply.Allow()) flush = _target.FlushAsync();
                    await flush;
                    break;
                case NbdCommand.Trim:
                    await _target.TrimAsync((long)header.Offset, header.Length, (header.Flags & CommandFlags.Fua) != 0);
                    break;
                case NbdCommand.WriteZeroes:
                    await _target.WriteZeroesAsync((long)header.Offset, header.Length,
                        mayDeallocate: (header.Flags & CommandFlags.NoHole) == 0,
                        fastOnly: (header.Flags & CommandFlags.FastZero) != 0,
                        fua: (header.Flags & CommandFlags.Fua) != 0);
                    break;
                case NbdCommand.Cache:
                    await _target.PrefetchAsync((long)header.Offset, header.Length);
                    break;
                case NbdCommand.BlockStatus when _baseAllocation: // dirty bitmaps are answered as the reply is encoded
                    request.ExtentCount = await _target.GetAllocationAsync((long)header.Offset, header.Length,
                        request.Extents.AsMemory(0, MaxExtentsOf(header)));
                    // A chunk MUST describe at least one extent: a target that found none says nothing, so all of it is data.
                    if (request.ExtentCount == 0) request.Extents[request.ExtentCount++] = new AllocationExtent(header.Length, AllocationState.Data);
                    break;
            }
        }
        catch (Exception e)
        {
            Fail(request, e);
        }
        Complete(request, sendHere: true);
    }

    /// <summary>The NBD error a target failure is reported as (logged unless it is a plain "not supported").</summary>
    private NbdError ErrorOf(BlockTargetException e, NbdRequestHeader header)
    {
        if (e.Error != BlockError.NotSupported)
            _requestFailures.Log($"NBD client {Peer}: {header.Command} at {header.Offset}+{header.Length} failed: {e.Message}");
        return e.Error switch
        {
            BlockError.NoSpace => NbdError.NoSpc,
            BlockError.InvalidRequest => NbdError.Inval,
            BlockError.ReadOnly => NbdError.Perm,
            BlockError.NotSupported => NbdError.NotSup,
            BlockError.ShuttingDown => NbdError.Shutdown,
            _ => NbdError.Io,
        };
    }

    /// <summary>
    /// Encodes the reply in the request's own buffer and queues it. The receive loop's own replies
    /// (<paramref name="heldBack"/>) go out when it has parsed its recv. A request that completed on a
    /// pool thread (<paramref name="sendHere"/>) sends on it, unless another thread is sending already (it
    /// takes this reply too, so a group commit's many completions are still gathered into a few sends);
    /// any other is handed to a pool work item, so the receive loop goes on reading.
    /// </summary>
    private void Complete(NbdRequest request, bool heldBack = false, bool sendHere = false)
    {
        var header = request.Header;
        var buffer = request.Buffer.AsSpan();
        var structured = _session.StructuredReplies;
        if (request.Error != NbdError.None)
        {
            request.ReplyStart = 0;
            request.ReplyLength = structured && header.Command is NbdCommand.Read or NbdCommand.BlockStatus
                ? NbdReplyEncoder.WriteErrorChunk(buffer, request.Error, header.Cookie)
                : NbdReplyEncoder.WriteSimple(buffer, request.Error, header.Cookie);
        }
        else if (header.Command == NbdCommand.Read)
        {
            var length = (int)header.Length;
            if (structured)
            {
                request.ReplyStart = NbdRequest.HeaderRoom - NbdReplyEncoder.OffsetDataHeaderSize;
                NbdReplyEncoder.WriteOffsetDataHeader(buffer[request.ReplyStart..], header.Cookie, header.Offset, length, done: true);
            }
            else
            {
                request.ReplyStart = NbdRequest.HeaderRoom - NbdProtocol.SimpleReplyHeaderSize;
                NbdReplyEncoder.WriteSimple(buffer[request.ReplyStart..], NbdError.None, header.Cookie);
            }
            request.ReplyLength = NbdRequest.HeaderRoom - request.ReplyStart + length;
        }
        else if (header.Command == NbdCommand.BlockStatus)
        {
            request.ReplyStart = 0;
            request.ReplyLength = WriteBlockStatus(buffer, request);
        }
        else
        {
            request.ReplyStart = 0;
            request.ReplyLength = NbdReplyEncoder.WriteSimple(buffer, NbdError.None, header.Cookie);
        }
        _replies.Enqueue(request);
        if (heldBack || Interlocked.CompareExchange(ref _sending, 1, 0) != 0) return;
        if (sendHere) _ = SendQueuedAsync(bounded: InlineReply.Running);
        else ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: true);
    }

    private static int MaxExtentsOf(in NbdRequestHeader header) =>
        (header.Flags & CommandFlags.ReqOne) != 0 ? 1 : NbdRequest.MaxExtents;

    /// <summary>
    /// A BLOCK_STATUS reply: one chunk per selected context, the last one marked done. base:allocation's
    /// extents were fetched by <see cref="ExecuteAsync"/>; a dirty bitmap's are looked up here.
    /// </summary>
    private int WriteBlockStatus(Span<byte> buffer, NbdRequest request)
    {
        var header = request.Header;
        var n = 0;
        if (_baseAllocation)
            n += NbdReplyEncoder.WriteBlockStatus(buffer, header.Cookie, MetaContexts.BaseAllocationId,
                request.Extents.AsSpan(0, request.ExtentCount), done: _dirtyBitmaps.Length == 0);
        for (var i = 0; i < _dirtyBitmaps.Length; i++)
        {
            var bitmap = _dirtyBitmaps[i];
            var extents = bitmap.WriteExtents(buffer[(n + NbdReplyEncoder.BlockStatusHeaderSize)..], (long)header.Offset, header.Length,
                MaxExtentsOf(header));
            n += NbdReplyEncoder.WriteBlockStatusHeader(buffer[n..], header.Cookie, bitmap.ContextId, extents, done: i == _dirtyBitmaps.Length - 1);
            n += extents * NbdReplyEncoder.ExtentSize;
        }
        return n;
    }

    /// <summary>Sends every queued reply, on this thread, unless another thread is sending (it picks them up).</summary>
    private void SendReplies()
    {
        if (!_replies.IsEmpty && Interlocked.CompareExchange(ref _sending, 1, 0) == 0) _ = SendQueuedAsync();
    }

    /// <summary>The pool work item that sends replies completed off the receive loop; it owns the send side already.</summary>
    void IThreadPoolWorkItem.Execute() => _ = SendQueuedAsync();

    /// <summary>
    /// Runs on the thread that took the send side (<see cref="_sending"/>) until a send has to wait for
    /// the socket; small replies are gathered so a burst of them leaves in one send.
    /// </summary>
    /// <remarks>
    /// <paramref name="bounded"/>: on a target's thread that completed a reply inline (a flusher after its
    /// fdatasync), it sends at most <see cref="InlineSendLimit"/> replies, then hands the send side to a
    /// pool work item, so the flusher is back to its log whatever the other requests of the connection do.
    /// </remarks>
    private async Task SendQueuedAsync(bool bounded = false)
    {
        while (true)
        {
            var batched = 0;
            var done = 0;
            try
            {
                while ((!bounded || done < InlineSendLimit) && _replies.TryDequeue(out var request))
                {
                    try
                    {
                        if (!_broken) batched = await SendOrGatherAsync(request.Reply, batched).ConfigureAwait(false);
                    }
                    catch (Exception e) when (IsDisconnect(e))
                    {
                        Break(e);
                    }
                    request.Reset();
                    _free.Writer.TryWrite(request);
                    done++;
                }
                if (batched > 0 && !_broken) await SendAsync(_sendBatch.AsMemory(0, batched)).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                if (!IsDisconnect(e)) _logger.LogError(e, "NBD client {Peer}: sending replies failed unexpectedly", Peer);
                Break(e);
            }
            // Counted as answered only once their bytes are out: the last one lets the connection close.
            for (var i = 0; i < done; i++) Release();
            // A full fence (not a plain store): a reply queued while the flag looked up must be seen
            // by the check below, or it would wait in the queue with nobody sending.
            Interlocked.Exchange(ref _sending, 0);
            if (_replies.IsEmpty || Interlocked.CompareExchange(ref _sending, 1, 0) != 0) return;
            if (bounded)
            {
                ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false); // it owns the send side now
                return;
            }
        }
    }

    private const int InlineSendLimit = 16;

    /// <summary>Adds a reply to the batch, sending the batch first when it is full; a reply larger than the batch goes out on its own.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> SendOrGatherAsync(ReadOnlyMemory<byte> reply, int batched)
    {
        if (reply.Length > _sendBatch.Length - batched)
        {
            await SendAsync(_sendBatch.AsMemory(0, batched)).ConfigureAwait(false);
            batched = 0;
        }
        if (reply.Length > _sendBatch.Length)
        {
            await SendAsync(reply).ConfigureAwait(false);
            return 0;
        }
        reply.Span.CopyTo(_sendBatch.AsSpan(batched));
        return batched + reply.Length;
    }

    // A send completes only once the socket has taken all of it: sent a slice at a time, a large reply shows progress (the send
    // timeout counts from the last slice taken, so a slow reader of a 32 MiB reply is not taken for one that reads nothing).
    private const int SendSlice = 1 << 20;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendAsync(ReadOnlyMemory<byte> bytes)
    {
        try
        {
            while (!bytes.IsEmpty)
            {
                Volatile.Write(ref _sendProgressAt, Environment.TickCount64);
                var n = await _socket.SendAsync(bytes[..Math.Min(bytes.Length, SendSlice)], SocketFlags.None).ConfigureAwait(false);
                bytes = bytes[n..];
            }
        }
        finally
        {
            Volatile.Write(ref _sendProgressAt, 0);
        }
    }

    // When the socket last took bytes of a send under way (Environment.TickCount64); 0 while none is.
    private long _sendProgressAt;

    /// <summary>How long a send (of at most <see cref="SendSlice"/>) has been under way (the client reads no replies); zero when none is.</summary>
    internal TimeSpan SendStalledFor(long now) =>
        Volatile.Read(ref _sendProgressAt) is var since and > 0 ? TimeSpan.FromMilliseconds(Math.Max(0, now - since)) : TimeSpan.Zero;

    private void Break(Exception e)
    {
        if (_broken) return;
        _broken = true;
        _logger.LogInformation("NBD client {Peer} went away while replies were pending: {Reason}", Peer, e.Message);
        StopReading();
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _pending) == 0) _allReplied.TrySetResult();
    }

    private static bool IsDisconnect(Exception e) =>
        e is EndOfStreamException or SocketException or OperationCanceledException or ObjectDisposedException
            or NbdProtocolException or IOException;

    /// <summary>
    /// Drops the client (it takes none of its replies): no more requests are read, and its socket closes, so the send that waits
    /// for it fails and every reply still queued is let go with its buffers. The connection ends as when a client goes away.
    /// </summary>
    internal void Drop(string reason)
    {
        StopReading(reason);
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _socket.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _socket.Dispose();
        _stopReading.Dispose();
        return ValueTask.CompletedTask;
    }
}
