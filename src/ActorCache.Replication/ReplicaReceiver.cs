using System.Net;
using System.Net.Sockets;
using System.Text;
using ActorCache.Blocks;
using ActorCache.Cache;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replication;

/// <summary>
/// The secondary's end: one TCP listener per node that the primaries' links connect to, one connection
/// per (volume, primary). A volume has at most one connection at a time: a new one replaces the old.
/// </summary>
public sealed class ReplicaReceiver : IAsyncDisposable
{
    /// <summary>The most 4 KiB blocks a frame's payload holds (64 MiB): far above any batch or resync run of the default settings.</summary>
    public const int MaxFrameBlocks = 16384;

    /// <summary>The largest log batch a frame carries (its header block and data): <c>cache.max-batch</c> may not be above it.</summary>
    public const long MaxBatchBytes = (MaxFrameBlocks - 1) * 4096L;

    private readonly Socket _listener;
    private readonly Func<string, long, string, ReplicaSink?> _resolve;
    private readonly ILogger _logger;
    private readonly TimeSpan _stallTimeout;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<string, (CancellationTokenSource Cancel, Task Done)> _volumes = new(StringComparer.Ordinal);
    private readonly List<Task> _connections = [];
    private Task _accepting = Task.CompletedTask;

    private ReplicaReceiver(Socket listener, Func<string, long, string, ReplicaSink?> resolve, ILogger logger, TimeSpan stallTimeout)
    {
        _listener = listener;
        _resolve = resolve;
        _logger = logger;
        _stallTimeout = stallTimeout;
        LocalEndpoint = (IPEndPoint)listener.LocalEndPoint!;
    }

    /// <summary>Listens on <paramref name="bind"/> (port 0 = any); <paramref name="resolve"/> maps a volume name to its sink, null when this node has no replica of it.</summary>
    public static ReplicaReceiver Start(IPEndPoint bind, Func<string, ReplicaSink?> resolve, ILogger logger) =>
        Start(bind, (volume, _, _) => resolve(volume), logger);

    /// <summary>
    /// As above, with the primary's claim: the epoch of the replica set under which it connects and its
    /// node name (<see cref="ReplicaLinkOptions.Epoch"/>, <see cref="ReplicaLinkOptions.PrimaryNode"/>). A
    /// node whose own set names another primary or epoch refuses it, so a former primary that has not yet
    /// learnt of its demotion never writes to a replica that follows the new one. A connection whose primary sends
    /// nothing for <paramref name="stallTimeout"/> (default 10 s) in the middle of a frame that is being received into
    /// this node's ring is dropped, and the slots go back: the ring is every volume's on this node.
    /// </summary>
    public static ReplicaReceiver Start(IPEndPoint bind, Func<string, long, string, ReplicaSink?> resolve, ILogger logger, TimeSpan? stallTimeout = null)
    {
        var listener = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(bind);
            listener.Listen(64);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        var receiver = new ReplicaReceiver(listener, resolve, logger, stallTimeout ?? TimeSpan.FromSeconds(10));
        receiver._accepting = Task.Run(receiver.AcceptAsync);
        return receiver;
    }

    public IPEndPoint LocalEndpoint { get; }

    private async Task AcceptAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stopping.IsCancellationRequested) return;
                continue;
            }
            socket.NoDelay = true;
            lock (_gate)
            {
                _connections.RemoveAll(t => t.IsCompleted);
                _connections.Add(Task.Run(() => ServeAsync(socket)));
            }
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        var remote = socket.RemoteEndPoint;
        string? volume = null;
        ReplicaConnection? connection = null;
        ReplicaSink? sink = null;
        CancellationTokenSource? cancel = null;
        TaskCompletionSource? done = null;
        try
        {
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            handshake.CancelAfter(TimeSpan.FromSeconds(10));
            // The version 1 part first: a version 1 primary (a rolling update) sends no more, and is answered in version 1.
            var hello = new byte[Handshake.HelloSize];
            if (!await Handshake.ReadExactlyAsync(socket, hello.AsMemory(0, Handshake.HelloSizeV1), handshake.Token).ConfigureAwait(false)) return;
            if (BitConverter.ToUInt64(hello, 0) != Handshake.Magic)
            {
                await RefuseAsync(socket, Handshake.Status.BadHello, "not a replication handshake", handshake.Token, Handshake.Version1).ConfigureAwait(false);
                return;
            }
            var version = BitConverter.ToUInt16(hello, 8);
            if (version is not (Handshake.Version or Handshake.Version1))
            {
                await RefuseAsync(socket, Handshake.Status.VersionMismatch,
                    $"replication wire version {version} is not supported (this node speaks {Handshake.Version1} and {Handshake.Version})", handshake.Token,
                    Handshake.Version1).ConfigureAwait(false);
                return;
            }
            if (version == Handshake.Version &&
                !await Handshake.ReadExactlyAsync(socket, hello.AsMemory(Handshake.HelloSizeV1), handshake.Token).ConfigureAwait(false)) return;
            if (version == Handshake.Version1) hello = hello[..Handshake.HelloSizeV1];
            var incarnation = Handshake.IncarnationOf(hello);
            var primaryVolumeId = new Guid(hello.AsSpan(16, 16));
            var name = new byte[BitConverter.ToUInt16(hello, 10)];
            if (!await Handshake.ReadExactlyAsync(socket, name, handshake.Token).ConfigureAwait(false)) return;
            volume = Encoding.UTF8.GetString(name);
            var epoch = BitConverter.ToUInt32(hello, 12);
            var primary = "";
            if (volume.IndexOf('@') is var at and >= 0) (volume, primary) = (volume[..at], volume[(at + 1)..]); // VOLUME@PRIMARY (names have no '@')
            sink = _resolve(volume, epoch, primary);
            if (sink is null)
            {
                await RefuseAsync(socket, Handshake.Status.UnknownVolume,
                    $"this node has no replica of volume {volume} that follows {(primary.Length > 0 ? primary : "that primary")} under epoch {epoch}", handshake.Token,
                    version).ConfigureAwait(false);
                return;
            }

            // One connection per volume: a new one (the primary reconnected) replaces the old, which stops before this one applies anything.
            cancel = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token, sink.Revoked);
            done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            (CancellationTokenSource Cancel, Task Done) previous;
            lock (_gate)
            {
                _volumes.TryGetValue(volume, out previous);
                _volumes[volume] = (cancel, done.Task);
            }
            if (previous.Cancel is not null)
            {
                try
                {
                    previous.Cancel.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // It ended meanwhile (and let go of its token).
                }
                await previous.Done.ConfigureAwait(false);
            }

            ReplicaState? state;
            try
            {
                state = ReplicaState.Read(sink.StateDirectory);
            }
            catch (InvalidDataException e)
            {
                _logger.LogError("volume {Volume}: {Problem}", volume, e.Message);
                state = new ReplicaState(PeerDisk.Inconsistent, 0, Guid.Empty, DateTimeOffset.UtcNow); // the primary resyncs everything
            }
            // A new primary after a failover asks how this replica differs from the former primary's data (see ReplicaHistory).
            HistoryAnswer? answer = null;
            if (Handshake.BasisOf(hello) is { } basis && sink.History is { } history)
            {
                handshake.CancelAfter(TimeSpan.FromSeconds(90)); // the answer walks the log
                answer = await history.AnswerAsync(basis, primaryVolumeId).ConfigureAwait(false);
            }
            await Handshake.SendAllAsync(socket, Handshake.Reply(Handshake.Status.Accepted, state, null, answer, version), handshake.Token).ConfigureAwait(false);
            _logger.LogInformation("volume {Volume}: replicating from {Remote}; local replica {State}{History}", volume, remote,
                state is null ? "is new" : $"is {state.Disk} through batch {state.AppliedSequence}",
                answer is null ? "" : $"; {Handshake.Count(answer.Blocks)} blocks changed here since batch {answer.Sequence} of that history");
            connection = new ReplicaConnection(volume, socket, sink, primaryVolumeId, incarnation, state, _logger, _stallTimeout);
            await connection.RunAsync(cancel.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or ObjectDisposedException or InvalidDataException)
        {
            if (sink is not null && sink.IsRevoked)
                _logger.LogInformation("volume {Volume}: the replication connection from {Remote} was dropped: this replica no longer follows that primary", volume ?? "?", remote);
            else if (!_stopping.IsCancellationRequested && cancel?.IsCancellationRequested != true)
                _logger.LogInformation("volume {Volume}: the replication connection from {Remote} ended: {Message}", volume ?? "?", remote, e.Message);
        }
        catch (Exception e)
        {
            _logger.LogError(e, "volume {Volume}: the replication connection from {Remote} failed", volume ?? "?", remote);
        }
        finally
        {
            socket.Dispose();
            if (connection is not null) await connection.StopAsync().ConfigureAwait(false);
            if (volume is not null && done is not null)
            {
                lock (_gate)
                    if (_volumes.TryGetValue(volume, out var current) && current.Done == done.Task) _volumes.Remove(volume);
                done.TrySetResult();
            }
            // Linked to tokens that live as long as the node: undisposed, every connection would stay registered on them.
            cancel?.Dispose();
        }
    }

    private static async Task RefuseAsync(Socket socket, Handshake.Status status, string text, CancellationToken cancellationToken, ushort version) =>
        await Handshake.SendAllAsync(socket, Handshake.Reply(status, null, text, version: version), cancellationToken).ConfigureAwait(false);

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested) return;
        _stopping.Cancel();
        _listener.Dispose();
        await _accepting.ConfigureAwait(false);
        Task[] connections;
        lock (_gate) connections = [.. _connections];
        await Task.WhenAll(connections).ConfigureAwait(false);
    }
}

/// <summary>
/// One replication connection on the secondary: reads frames, verifies every checksum before applying
/// anything of a frame, applies entries in order to the sink's target, acknowledges Received at once
/// and Durable after a flush (at every sync point and resync end, and within 100 ms otherwise), and
/// keeps the replica state file.
/// </summary>
internal sealed class ReplicaConnection(string volume, Socket socket, ReplicaSink sink, Guid primaryVolumeId, Guid incarnation, ReplicaState? initial, ILogger logger,
    TimeSpan stallTimeout)
{
    private const int MaxPayloadBlocks = ReplicaReceiver.MaxFrameBlocks;
    private static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan StateInterval = TimeSpan.FromSeconds(1);
    private const long FlushEveryBytes = 16L << 20;

    private readonly Lock _gate = new();
    private readonly Lock _sendGate = new();
    private readonly byte[] _ack = new byte[Ack.Size];
    private readonly AsyncSignal _flushSignal = new();
    private readonly LogEntry[] _entries = new LogEntry[LogFormat.MaxEntries];
    private byte[] _payload = GC.AllocateUninitializedArray<byte>((1 + 256) * LogFormat.BlockSize, pinned: true);
    private readonly StagedWrite _staged = new(); // a frame's data received into the cache's ring slots; cleared once applied
    private long _stagedProgressAt; // Environment.TickCount64 of the last bytes received into _staged; 0 when none is being received
    private volatile bool _stalled; // the primary stalled mid-frame: the tick shut the socket down
    private Task _flusher = Task.CompletedTask;
    private volatile bool _stopped;

    // Guarded by _gate.
    private PeerDisk _disk = initial?.Disk ?? PeerDisk.Unknown;
    // Batch numbers are the primary's: those a state file kept from another primary's volume say nothing about this one's.
    private long _appliedFrame, _appliedSequence = initial?.PrimaryVolumeId == primaryVolumeId ? initial.AppliedSequence : 0;
    private long _flushWanted;            // a frame the next flush must cover at once (sync point, resync end)
    private long _resyncDoneFrame = -1, _resyncDoneSequence;
    private long _durableFrame, _durableSequence = initial?.PrimaryVolumeId == primaryVolumeId ? initial.AppliedSequence : 0;
    private long _unflushedBytes;
    // This replica's history of this primary (see HistoryCheckpoint): kept while UpToDate, dropped when a resync begins.
    // Kept across connections of the same primary volume: a clean restart of the primary keeps its numbering, and after an
    // unclean one its first connection resyncs (which drops them). Checkpoints in another log than this replica's are useless.
    private IReadOnlyList<HistoryCheckpoint> _checkpoints =
        initial?.PrimaryVolumeId == primaryVolumeId && initial.LocalVolumeId == (sink.History?.VolumeId ?? Guid.Empty) ? initial.Checkpoints : [];
    private HistoryCheckpoint? _checkpoint;
    // The last frames' checkpoints, one per batch: the state written when the connection ends (a failover follows one) keeps
    // them all, so a new primary finds a checkpoint right at the last batch both secondaries hold, not a second before it.
    private readonly HistoryCheckpoint[] _recent = new HistoryCheckpoint[HistoryCheckpoint.Kept / 2];
    private int _recentCount, _recentNext;
    private DateTime _stateWritten = DateTime.UtcNow;
    private bool _stateChanged;
    private long _stateVersion;
    private readonly Lock _stateWrite = new();
    private long _writtenVersion; // under _stateWrite

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _flusher = Task.Run(() => FlushLoopAsync(cancellationToken), CancellationToken.None);
        using var timer = new Timer(static s => ((ReplicaConnection)s!).OnTick(), this, FlushInterval, FlushInterval);
        var head = new byte[FrameHeader.Size];
        var expected = -1L;
        while (true)
        {
            if (!await Handshake.ReadExactlyAsync(socket, head, cancellationToken).ConfigureAwait(false))
                throw new IOException("the primary closed the connection");
            if (!FrameHeader.TryRead(head, out var frame)) throw BadFrame("a frame header with a bad checksum or kind");
            if (expected >= 0 && frame.FrameId != expected) throw BadFrame($"frame {frame.FrameId} arrived where {expected} was expected");
            if (frame.PayloadBlocks > MaxPayloadBlocks) throw BadFrame($"a frame of {frame.PayloadBlocks} blocks");
            expected = frame.FrameId + 1;
            var length = frame.PayloadBlocks * LogFormat.BlockSize;
            if (_payload.Length < length) _payload = GC.AllocateUninitializedArray<byte>(length, pinned: true);
            var payload = _payload.AsMemory(0, length);
            try
            {
                var header = await ReceiveFrameAsync(frame, payload, cancellationToken).ConfigureAwait(false);
                // Everything is checked before anything is applied.
                VerifyPayload(frame, header, payload);
                // A frame is applied whole under the sink, or not at all once the sink is revoked (this node no longer follows that primary).
                if (!await sink.BeginApplyAsync(cancellationToken).ConfigureAwait(false))
                    throw new OperationCanceledException("this replica no longer follows the primary of this connection");
                try
                {
                    await ApplyFrameAsync(frame, header, payload, length, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    sink.EndApply();
                }
            }
            finally
            {
                // Slots staged for a frame that was not applied (a bad frame, a closed connection) go back to the ring.
                if (_staged.StagedBy is not null) sink.Target.AbandonStagedWrite(_staged);
            }
        }
    }

    /// <summary>
    /// Reads a frame's payload. A batch's data and a resync run go straight into ring slots of this replica's write-back
    /// cache when it takes them (<see cref="_staged"/>, as the NBD front receives a WRITE): the one copy of the data on this
    /// node, from the socket. A batch's own header block is read first, as it says how many data blocks follow.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))] // waits on every frame: no box per call
    private async ValueTask<BatchHeader> ReceiveFrameAsync(FrameHeader frame, Memory<byte> payload, CancellationToken cancellationToken)
    {
        switch (frame.Kind)
        {
            case FrameKind.Batch:
            {
                if (frame.PayloadBlocks < 1) throw BadFrame("a batch without its header");
                await ReadPayloadAsync(payload[..LogFormat.BlockSize], cancellationToken).ConfigureAwait(false);
                var header = ReadBatchHeader(frame, payload.Span[..LogFormat.BlockSize]);
                if (header.DataBlocks > 0 && sink.Target is WriteBackCache cache &&
                    await cache.TryStageBatchAsync((int)header.DataBlocks, _staged, cancellationToken).ConfigureAwait(false))
                    await ReadStagedAsync(cancellationToken).ConfigureAwait(false);
                else await ReadPayloadAsync(payload[LogFormat.BlockSize..], cancellationToken).ConfigureAwait(false);
                return header;
            }
            case FrameKind.ResyncData:
                if (frame.PayloadBlocks == 0) throw BadFrame($"resync data of no blocks at block {frame.Block}");
                if (frame.Block < 0 || frame.Block > sink.Target.Size / LogFormat.BlockSize - frame.PayloadBlocks)
                    throw BadFrame($"resync data outside the volume (block {frame.Block})");
                if (await sink.Target.TryStageWriteAsync(frame.Block * LogFormat.BlockSize, payload.Length, _staged, cancellationToken).ConfigureAwait(false))
                    await ReadStagedAsync(cancellationToken).ConfigureAwait(false);
                else await ReadPayloadAsync(payload, cancellationToken).ConfigureAwait(false);
                return default;
            default:
                await ReadPayloadAsync(payload, cancellationToken).ConfigureAwait(false);
                return default;
        }
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadPayloadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (!await Handshake.ReadExactlyAsync(socket, buffer, cancellationToken).ConfigureAwait(false))
            throw new IOException("the primary closed the connection in the middle of a frame");
    }

    /// <summary>Receives into the staged slots, noting every piece that arrives: the tick drops a primary that stalls meanwhile (<see cref="OnTick"/>).</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadStagedAsync(CancellationToken cancellationToken)
    {
        Volatile.Write(ref _stagedProgressAt, Environment.TickCount64);
        try
        {
            for (var i = 0; i < _staged.SegmentCount; i++)
            {
                var segment = _staged.Segment(i);
                for (var read = 0; read < segment.Length;)
                {
                    var n = await socket.ReceiveAsync(segment[read..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
                    if (n == 0)
                        throw new IOException(_stalled
                            ? $"the primary sent nothing for {stallTimeout.TotalSeconds:0.#} s in the middle of a frame, holding {ByteSize.Format(_staged.Length)} of this node's ring: dropped"
                            : "the primary closed the connection in the middle of a frame");
                    read += n;
                    Volatile.Write(ref _stagedProgressAt, Environment.TickCount64);
                }
            }
        }
        finally
        {
            Volatile.Write(ref _stagedProgressAt, 0);
        }
    }

    /// <summary>A batch's header block: its checksum, this primary's volume id, and entries that fit the volume and the frame.</summary>
    private BatchHeader ReadBatchHeader(FrameHeader frame, ReadOnlySpan<byte> block)
    {
        if (!LogFormat.TryReadHeader(block, primaryVolumeId, out var header, _entries))
            throw BadFrame("a batch whose header does not verify (checksum, format or volume id)");
        if (frame.PayloadBlocks != 1 + header.DataBlocks) throw BadFrame($"batch {header.Sequence}: {frame.PayloadBlocks - 1} data blocks sent, its header says {header.DataBlocks}");
        var blocks = sink.Target.Size / LogFormat.BlockSize;
        for (var i = 0; i < header.EntryCount; i++)
            if (_entries[i].Block > blocks - _entries[i].BlockCount) throw BadFrame($"batch {header.Sequence}: an entry beyond the volume's end (block {_entries[i].Block})");
        return header;
    }

    /// <summary>Every data checksum of the frame, wherever its data was received (the payload buffer or staged ring slots).</summary>
    private void VerifyPayload(FrameHeader frame, BatchHeader header, Memory<byte> payload)
    {
        var staged = _staged.StagedBy is null ? null : _staged;
        var data = new PayloadReader(staged is not null ? default : frame.Kind == FrameKind.Batch ? payload.Span[LogFormat.BlockSize..] : payload.Span, staged);
        switch (frame.Kind)
        {
            case FrameKind.Batch:
                for (var i = 0; i < header.EntryCount; i++)
                {
                    var entry = _entries[i];
                    if (entry.Type == LogEntryType.Data && data.Crc(entry.BlockCount * LogFormat.BlockSize) != entry.Crc)
                        throw BadFrame($"batch {header.Sequence}: the data of block {entry.Block} does not match its checksum");
                }
                break;
            case FrameKind.ResyncData:
                if (data.Crc(payload.Length) != frame.PayloadCrc) throw BadFrame($"resync data for block {frame.Block} does not match its checksum");
                break;
        }
    }

    /// <summary>A frame's data read in order for its checksums, from one buffer or from the ring slots it was staged into.</summary>
    private ref struct PayloadReader(ReadOnlySpan<byte> buffer, StagedWrite? staged)
    {
        private ReadOnlySpan<byte> _buffer = buffer;
        private readonly StagedWrite? _segments = staged;
        private int _segment, _within;

        public uint Crc(int bytes)
        {
            var crc = 0xFFFFFFFFu;
            if (_segments is null)
            {
                crc = Crc32C.Append(crc, _buffer[..bytes]);
                _buffer = _buffer[bytes..];
                return ~crc;
            }
            while (bytes > 0)
            {
                var segment = _segments.Segment(_segment).Span;
                var n = Math.Min(bytes, segment.Length - _within);
                crc = Crc32C.Append(crc, segment.Slice(_within, n));
                bytes -= n;
                _within += n;
                if (_within == segment.Length) (_segment, _within) = (_segment + 1, 0);
            }
            return ~crc;
        }
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ApplyFrameAsync(FrameHeader frame, BatchHeader header, Memory<byte> payload, int length, CancellationToken cancellationToken)
    {
        switch (frame.Kind)
        {
            case FrameKind.Batch:
                await ApplyBatchAsync(frame, header, payload, cancellationToken).ConfigureAwait(false);
                break;
            case FrameKind.ResyncData:
                SendAck(AckKind.Received, frame.FrameId);
                if (_staged.StagedBy is not null) await sink.Target.CommitStagedWriteAsync(_staged, fua: false, cancellationToken).ConfigureAwait(false);
                else await sink.Target.WriteAsync(frame.Block * LogFormat.BlockSize, payload, fua: false, cancellationToken).ConfigureAwait(false);
                Applied(frame.FrameId, -1, length, flush: false);
                break;
            case FrameKind.ResyncBegin:
                SendAck(AckKind.Received, frame.FrameId);
                (ReplicaState, long) inconsistent;
                lock (_gate)
                {
                    _disk = PeerDisk.Inconsistent;
                    // A resync's end not yet durable (a catch-up's overlap just before) no longer makes this replica UpToDate.
                    _resyncDoneFrame = -1;
                    _checkpoints = [];
                    _checkpoint = null;
                    _recentCount = 0;
                    inconsistent = StateLocked();
                }
                // Written before any resync data is applied: a replica cut off mid-resync is never taken for a consistent one.
                Write(inconsistent);
                Applied(frame.FrameId, -1, 0, flush: false);
                break;
            case FrameKind.ResyncDone:
                SendAck(AckKind.Received, frame.FrameId);
                lock (_gate)
                {
                    _resyncDoneFrame = frame.FrameId;
                    _resyncDoneSequence = frame.Block;
                }
                Applied(frame.FrameId, frame.Block, 0, flush: true);
                break;
        }
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ApplyBatchAsync(FrameHeader frame, BatchHeader header, Memory<byte> payload, CancellationToken cancellationToken)
    {
        SendAck(AckKind.Received, frame.FrameId);
        var target = sink.Target;
        var entries = _entries.AsMemory(0, header.EntryCount);
        // A write-back cache takes the batch as one request (one batch of its log, as the primary logged it); anything else entry by entry.
        if (target is WriteBackCache cache)
        {
            var applied = _staged.StagedBy is null
                ? await cache.TryApplyBatchAsync(entries, payload[LogFormat.BlockSize..], cancellationToken).ConfigureAwait(false)
                : await cache.CommitStagedBatchAsync(entries, _staged).ConfigureAwait(false);
            if (applied)
            {
                Applied(frame.FrameId, header.Sequence, payload.Length, flush: header.IsSyncPoint);
                return;
            }
            if (_staged.StagedBy is not null) // the cache left write-back while the data arrived: entry by entry, from a copy
            {
                _staged.CopyTo(payload.Span[LogFormat.BlockSize..]);
                cache.AbandonStagedWrite(_staged);
            }
        }
        var offsetInPayload = LogFormat.BlockSize;
        for (var i = 0; i < header.EntryCount; i++)
        {
            var entry = _entries[i];
            var offset = entry.Block * LogFormat.BlockSize;
            var bytes = (long)entry.BlockCount * LogFormat.BlockSize;
            switch (entry.Type)
            {
                case LogEntryType.Data:
                    await target.WriteAsync(offset, payload.Slice(offsetInPayload, (int)bytes), fua: false, cancellationToken).ConfigureAwait(false);
                    offsetInPayload += (int)bytes;
                    break;
                case LogEntryType.Trim:
                    await target.TrimAsync(offset, bytes, fua: false, cancellationToken).ConfigureAwait(false);
                    break;
                case LogEntryType.Zero:
                    await target.WriteZeroesAsync(offset, bytes, mayDeallocate: false, fastOnly: false, fua: false, cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
        Applied(frame.FrameId, header.Sequence, payload.Length, flush: header.IsSyncPoint);
    }

    private InvalidDataException BadFrame(string what)
    {
        logger.LogError("volume {Volume}: the primary sent a bad replication frame ({What}); nothing of it was applied, the connection is dropped " +
                        "(the primary resyncs what this replica misses when it reconnects)", volume, what);
        return new InvalidDataException($"bad replication frame: {what}");
    }

    private void Applied(long frameId, long sequence, long bytes, bool flush)
    {
        var wake = flush;
        lock (_gate)
        {
            _appliedFrame = frameId;
            if (sequence > 0) _appliedSequence = sequence;
            // Between two frames: every later write lands in a local batch after the last one durable now.
            if (sequence > 0 && _disk == PeerDisk.UpToDate && sink.History is { } history)
            {
                var checkpoint = new HistoryCheckpoint(sequence, history.LocalDurable);
                _checkpoint = checkpoint;
                _recent[_recentNext] = checkpoint;
                _recentNext = (_recentNext + 1) % _recent.Length;
                _recentCount = Math.Min(_recentCount + 1, _recent.Length);
            }
            _unflushedBytes += bytes;
            if (flush) _flushWanted = frameId;
            if (_unflushedBytes >= FlushEveryBytes) wake = true;
        }
        if (wake) _flushSignal.Set();
    }

    private void OnTick()
    {
        var progressAt = Volatile.Read(ref _stagedProgressAt);
        if (progressAt != 0 && !_stalled && Environment.TickCount64 - progressAt > (long)stallTimeout.TotalMilliseconds)
        {
            // A hung or cut-off primary must not hold slots of the ring that every volume of this node writes through: the
            // receive sees the end of the stream and the frame's slots go back (RunAsync's finally).
            _stalled = true;
            try
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // gone already: its receive ends anyway
            }
        }
        bool behind;
        lock (_gate) behind = _appliedFrame > _durableFrame || _stateChanged;
        if (behind) _flushSignal.Set();
    }

    /// <summary>Flushes the target when asked (sync point, resync end, 16 MiB applied) or within 100 ms of anything applied, then acknowledges Durable.</summary>
    private async Task FlushLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await _flushSignal.WaitAsync().ConfigureAwait(false);
                if (cancellationToken.IsCancellationRequested || _stopped) break;
                long frame, sequence;
                lock (_gate)
                {
                    frame = _appliedFrame;
                    sequence = _appliedSequence;
                    _unflushedBytes = 0;
                }
                if (frame > Volatile.Read(ref _durableFrame)) await sink.Target.FlushAsync(cancellationToken).ConfigureAwait(false);
                (ReplicaState, long)? state = null;
                lock (_gate)
                {
                    if (frame > _durableFrame)
                    {
                        _durableFrame = frame;
                        _durableSequence = sequence;
                        _stateChanged = true;
                    }
                    if (_resyncDoneFrame >= 0 && frame >= _resyncDoneFrame)
                    {
                        _resyncDoneFrame = -1;
                        _disk = PeerDisk.UpToDate;
                        _durableSequence = Math.Max(_durableSequence, _resyncDoneSequence);
                        state = StateLocked();
                    }
                    else if (_stateChanged && _disk == PeerDisk.UpToDate && DateTime.UtcNow - _stateWritten >= StateInterval) state = StateLocked();
                }
                // UpToDate is on disk before the primary hears the resync is done (and counts this replica in FLUSH).
                Write(state);
                long durable;
                bool upToDate;
                lock (_gate) (durable, upToDate) = (_durableSequence, _disk == PeerDisk.UpToDate);
                if (upToDate && !sink.IsRevoked) sink.Durable?.Invoke(new HistoryBasis(primaryVolumeId, incarnation, durable));
                SendAck(AckKind.Durable, frame);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        catch (Exception e)
        {
            logger.LogError("volume {Volume}: flushing the replica failed ({Message}); the connection is dropped", volume, e.Message);
            socket.Dispose(); // the reader fails and the primary marks what this replica did not acknowledge
        }
    }

    private void SendAck(AckKind kind, long frameId)
    {
        if (frameId <= 0) return;
        lock (_sendGate)
        {
            Ack.Write(_ack, kind, frameId);
            socket.Send(_ack);
        }
    }

    /// <summary>The state to write now; the caller writes it with <see cref="Write"/> outside the lock.</summary>
    private (ReplicaState State, long Version) StateLocked()
    {
        _stateWritten = DateTime.UtcNow;
        _stateChanged = false;
        if (_disk == PeerDisk.UpToDate && _checkpoint is { } checkpoint) _checkpoints = HistoryCheckpoint.Append(_checkpoints, checkpoint);
        return (new ReplicaState(_disk, _durableSequence, primaryVolumeId, DateTimeOffset.UtcNow)
        {
            Checkpoints = _checkpoints, PrimaryIncarnation = incarnation, LocalVolumeId = sink.History?.VolumeId ?? Guid.Empty,
        }, ++_stateVersion);
    }

    /// <summary>Writes a state unless a newer one was written already (the reader and the flusher both write; the newest wins).</summary>
    private void Write((ReplicaState State, long Version)? state, bool final = false)
    {
        if (state is not { } s || (sink.IsRevoked && !final)) return; // a replica that no longer follows this primary takes no new state from it
        lock (_stateWrite)
        {
            if (s.Version <= _writtenVersion) return;
            s.State.Write(sink.StateDirectory);
            _writtenVersion = s.Version;
        }
    }

    /// <summary>After the connection ended: the flusher stops, and the state file gets the last durable sequence.</summary>
    public async Task StopAsync()
    {
        _stopped = true;
        _flushSignal.Set();
        await _flusher.ConfigureAwait(false);
        (ReplicaState, long)? state = null;
        lock (_gate)
        {
            if (_disk == PeerDisk.UpToDate && _recentCount > 0)
            {
                _checkpoints = HistoryCheckpoint.Merge(_checkpoints,
                    Enumerable.Range(0, _recentCount).Select(i => _recent[(_recentNext - _recentCount + i + _recent.Length) % _recent.Length]));
                _stateChanged = true;
            }
            if (_stateChanged && _disk == PeerDisk.UpToDate) state = StateLocked();
        }
        // What was acknowledged Durable is on record, revoked or not (the next connection of this volume waits for this one's end).
        Write(state, final: true);
    }
}
