using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using ActorCache.Blocks;
using ActorCache.Cache;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replication;

/// <summary>
/// The primary's end of one (volume, secondary) replication link (DESIGN §4). It subscribes to the
/// cache's log batches, copies each into its own bounded send buffer (releasing the ring slots at once,
/// so a slow peer never starves the ring), ships them over one dedicated TCP connection, and joins the
/// cache's durability barrier per protocol once the peer is connected and in sync.
/// </summary>
/// <remarks>
/// <para>Plain writes are acknowledged locally under every protocol: the write-back cache promises
/// durability only at FLUSH/FUA (DESIGN §2), so the protocol decides what a completed FLUSH/FUA means:
/// A local durability only, B also the peer's receipt of the sync point's batch, C also its durability.</para>
/// <para>What the peer may lack is tracked in an out-of-sync bitmap: while disconnected every published
/// block is marked, and at a disconnect every block of a frame the peer has not acknowledged durable is
/// marked. On (re)connect the marked blocks are resynced (read from the cache, rate limited) while new
/// batches keep streaming. The resync read and the batch stream are ordered by one lock: a batch that
/// touches a run while that run is being read invalidates the read, which is then retried, so a resync
/// frame never carries data older than a batch sent before it.</para>
/// <para>The bitmap is persisted in <see cref="ReplicaLinkOptions.StateDirectory"/>: marked dirty at
/// <see cref="Start"/>, written clean at <see cref="DisposeAsync"/>. After a crash (a dirty file), or
/// when batches were written that the link did not see, every block is marked: a full resync (correct, slower).</para>
/// </remarks>
public sealed partial class ReplicaLink : IAsyncDisposable
{
    private const int ResyncRunBlocks = 256; // 1 MiB per resync frame
    private const int BlockSize = LogFormat.BlockSize;

    private readonly ReplicaLinkOptions _options;
    private readonly WriteBackCache _cache;
    private readonly ILogger _logger;
    private readonly Guid _volumeId;
    private readonly string _participantName;
    private readonly Lock _gate = new();
    private readonly Lock _saveGate = new(); // one writer of the bitmap file at a time (its temporary file is shared)
    private readonly OutOfSyncBitmap _bitmap;
    private readonly FrameQueue _frames = new();
    private readonly AsyncSignal _sendSignal = new();
    private readonly SemaphoreSlim _connectSignal = new(0);
    private readonly AckLatency _latency = new();
    private readonly LogEntry[] _entries = new LogEntry[LogFormat.MaxEntries]; // under _gate
    private readonly CancellationTokenSource _stopping = new();
    private readonly Subscriber _subscriber;
    private readonly RepeatedLog _connectFailures;
    private IDisposable? _subscription;
    private Task? _loop;
    private int _disposed;

    /// <summary>Tests: runs between a resync run's read and its queueing (to widen the window a newer batch can fall into).</summary>
    internal Func<long, int, ValueTask>? AfterResyncRead;

    /// <summary>Tests: runs when a catch-up from the log begins, before it reads the log (a window a verify's mark can fall into).</summary>
    internal Func<ValueTask>? BeforeCatchUp;

    // All guarded by _gate.
    private OutOfSyncBitmap.FileFlags _flags;
    private long _lastSequence;         // the newest batch whose blocks are accounted for: shipped, queued or marked
    private bool _peerKnownIdentical;   // until the first connect (see ReplicaLinkOptions.PeerKnownIdentical)
    private HistoryBasis? _basis;       // after a failover, until the peer is in sync: what narrows the full resync (persisted)
    private OutOfSyncBitmap? _markedMeanwhile; // blocks of batches published while the narrowing is worked out
    private OutOfSyncBitmap? _savedMarks;      // a dirty bitmap's bits after a crash of this node: kept through the narrowing
    private long _fullMarks;                   // how often every block was marked (a narrowing that saw one meanwhile gives up)
    private long _narrowedAt = -1;             // _fullMarks when the bitmap was last narrowed: later narrowings add, never clear
    private bool _markAllAtStart;              // MarkAllOutOfSync before Start: what Start loads does not undo it
    private ushort _wireVersion = Handshake.Version; // version 1 once the peer said it speaks no other (a rolling update)
    private long _firstSeenSequence = -1; // the first batch published to the link before Start had read what the saved bitmap covers
    private bool _streaming;            // a session runs: batches go to the send buffer (else, or while catching up, into the bitmap)
    private long _session;
    private CancellationTokenSource? _sessionCancel;
    private long _nextFrameId = 1;
    private long _readFrom = -1;        // the run a resync read is reading
    private int _readCount;
    private bool _readInvalid;          // a batch touched that run while it was read
    private DurabilityBarrier.Participant? _participant;
    private bool _peerInSync;           // this session's peer is UpToDate: eligible for the barrier
    private long _resyncDoneFrame = -1;
    private long _receivedFrame, _durableFrame, _receivedSequence, _durableSequence;
    private PeerConnection _connection = PeerConnection.Connecting;
    private PeerDisk _peerDisk = PeerDisk.Unknown;
    private string? _problem;
    private string? _sessionEnd;        // why this session ended, where the link ended it (for the disconnect's log line)
    private bool _wantConnected = true;
    private ReplicationProtocol _protocol;
    private long _rate;
    private bool _resyncing;
    private long _resyncDone, _resyncTotal, _resyncStarted;
    private long _rateStarted, _rateBytes;

    // Catch-up from the log: a peer that comes back after an ordered session (every batch shipped in order, nothing else
    // marked) is sent the batches it missed from this node's log, so it keeps the same history and stays consistent
    // throughout; the bitmap is the fallback where the log no longer holds them.
    private long _orderedThrough = -1;        // the peer holds every batch through this one; the bitmap only blocks of later ones (-1: unknown)
    private long _tailAddress = -1, _tailSequence; // a batch at or before _orderedThrough + 1 in the log (-1: the first batch marked since)
    private long _markStartAddress = -1, _markStartSequence; // the first batch marked since the link last streamed live
    private long _foreignMarks, _marksSeen;   // marks not made by batches (verify, full marks): counted, so a catch-up never clears them
    private bool _sessionOrdered;             // this session ships batches in order and nothing else (in sync, or catching up)
    private bool _catchingUp;                 // batches go into the bitmap while the log tail is read and shipped
    private bool _catchUpSession;             // this session's resync is a catch-up from the log (for what is logged)
    private long _catchUpStart, _catchUpNextAddress, _catchUpNextSequence; // log addresses: where it began, where the next batch is
    private long _lastBatchEnd;               // log address past the last published batch
    private long _queuedThrough, _orderedQueued; // the newest batch queued for the peer this session; by any ordered session (never lowered)
    private string? _catchUpDeclined;         // why this session resyncs although it could catch up (for the connect's log line)
    private OutOfSyncBitmap? _catchUpMarks;   // blocks of batches published since a catch-up indexed the log it ships (while it runs)

    public ReplicaLink(ReplicaLinkOptions options, WriteBackCache cache, ILogger logger)
    {
        _epoch = options.Epoch;
        if (cache.Size % BlockSize != 0) throw new ArgumentException($"volume {options.Volume}: its size {cache.Size} is not a multiple of {BlockSize}");
        _options = options;
        _cache = cache;
        _logger = logger;
        _volumeId = cache.VolumeId;
        _protocol = options.Protocol;
        _rate = options.ResyncBytesPerSecond;
        _peerKnownIdentical = options.PeerKnownIdentical;
        _participantName = $"peer {options.PeerNode}";
        _bitmap = new OutOfSyncBitmap(cache.Size / BlockSize);
        _subscriber = new Subscriber(this);
        _connectFailures = new RepeatedLog(logger, LogLevel.Warning);
        _lastSequence = -1; // unknown until Start reads the persisted bitmap
    }

    private long _epoch;

    /// <summary>
    /// Bytes the link holds for the peer now (queued, or shipped and not yet durable there), read without
    /// the lock (a moment old at worst): the volume holds new writes back while it nears
    /// <see cref="ReplicaLinkOptions.MaxLagBytes"/>, so a peer that is merely slower is not disconnected.
    /// </summary>
    public long HeldBytes => _frames.Bytes;

    /// <summary>
    /// The epoch of the replica set this node is primary under (<see cref="ReplicaLinkOptions.Epoch"/>), sent with
    /// every connection; a protocol switch raises it live. A peer refuses a link whose epoch and primary are not its own set's.
    /// </summary>
    public long Epoch
    {
        get => Volatile.Read(ref _epoch);
        set => Volatile.Write(ref _epoch, value);
    }

    /// <summary>What FLUSH/FUA wait for (see the remarks); switchable live: the link leaves and rejoins the barrier as needed.</summary>
    public ReplicationProtocol Protocol
    {
        get
        {
            lock (_gate) return _protocol;
        }
        set
        {
            lock (_gate)
            {
                if (_protocol == value) return;
                _protocol = value;
                // Rejoined at what the peer has by the new protocol's measure (a participant never moves back), before the old
                // participant leaves: leaving first let the barrier close a FLUSH waiting for this peer on the local log alone.
                var old = _participant;
                _participant = null;
                JoinBarrierLocked();
                if (old is not null) _cache.Barrier.Leave(old);
            }
            _logger.LogInformation("volume {Volume}: replication to {Peer} now uses protocol {Protocol}", _options.Volume, _options.PeerNode, value);
        }
    }

    /// <summary>Resync rate limit in bytes per second (0 = none); switchable live.</summary>
    public long ResyncBytesPerSecond
    {
        get
        {
            lock (_gate) return _rate;
        }
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            lock (_gate)
            {
                _rate = value;
                _rateStarted = Stopwatch.GetTimestamp();
                _rateBytes = 0;
            }
        }
    }

    public PeerStatus Status
    {
        get
        {
            lock (_gate)
            {
                ResyncProgress? resync = null;
                if (_resyncing)
                {
                    var seconds = Stopwatch.GetElapsedTime(_resyncStarted).TotalSeconds;
                    // A catch-up counts the log it has to ship (the bitmap holds its blocks until it is done).
                    var total = _catchingUp ? Math.Max(_resyncDone, _lastBatchEnd - _catchUpStart) : Math.Max(_resyncTotal, _resyncDone + _bitmap.Count * BlockSize);
                    resync = new ResyncProgress(_resyncDone, total, seconds > 0 ? _resyncDone / seconds : 0);
                }
                return new PeerStatus(_options.PeerNode, _connection, _peerDisk, _bitmap.Count * BlockSize, resync, _frames.Batches, _frames.Bytes,
                    _latency.Percentile(0.5), _latency.Percentile(0.99), _problem);
            }
        }
    }

    /// <summary>The secondary's node name.</summary>
    public string PeerNode => _options.PeerNode;

    /// <summary>The data connection is up (checked by the quorum fence without building a <see cref="Status"/>).</summary>
    public bool IsConnected
    {
        get
        {
            lock (_gate) return _connection == PeerConnection.Connected;
        }
    }

    /// <summary>Connected, UpToDate and not resyncing: every write reaches the peer (checked at every FLUSH/FUA, so it allocates nothing).</summary>
    public bool IsStreamingUpToDate
    {
        get
        {
            lock (_gate) return _connection == PeerConnection.Connected && _peerDisk == PeerDisk.UpToDate && !_resyncing;
        }
    }

    /// <summary>The peer is connected and UpToDate and lacks nothing but the batches on their way to it.</summary>
    public bool IsInSync
    {
        get
        {
            lock (_gate) return _connection == PeerConnection.Connected && _peerDisk == PeerDisk.UpToDate && _bitmap.Count == 0 && !_resyncing;
        }
    }

    /// <summary>The peer is connected and UpToDate, has acknowledged every batch shipped as durable and lacks nothing: it holds exactly what this node does, as long as nothing is written.</summary>
    public bool HoldsEverything
    {
        get
        {
            lock (_gate)
                return _connection == PeerConnection.Connected && _peerDisk == PeerDisk.UpToDate && _bitmap.Count == 0 && !_resyncing && _frames.Count == 0 &&
                       _durableSequence >= _lastSequence;
        }
    }

    /// <summary>Subscribes to the cache's batches and starts connecting in the background (retrying); resyncs what the peer misses, then streams.</summary>
    public void Start()
    {
        if (_loop is not null) throw new InvalidOperationException("the link is started already");
        Directory.CreateDirectory(_options.StateDirectory);
        OutOfSyncBitmap.Saved? saved;
        uint loaded;
        lock (_gate)
        {
            saved = _bitmap.Load(_options.StateDirectory);
            loaded = _bitmap.Checksum(); // before batches published from the subscription on add their marks
        }
        var hadFile = File.Exists(Path.Combine(_options.StateDirectory, OutOfSyncBitmap.FileName));
        var basis = ReadBasis(_options.StateDirectory);
        if (_options.PeerKnownIdentical) DeleteBasis();
        var point = CatchUpPoint.Load(_options.StateDirectory);
        _subscription = _cache.SubscribeBatches(_subscriber);
        // Batches durable before the subscription that the saved bitmap does not account for were never seen.
        var durable = _cache.Barrier.Local.DurableSequence;
        lock (_gate)
        {
            var accounted = -1L;
            string? reason = null;
            HistoryBasis? crashed = null;
            if (_options.PeerKnownIdentical)
            {
                // Everything this node has, the peer has: whatever an older bitmap here says, nothing is out of sync.
                _bitmap.Clear(0, _bitmap.Blocks);
                _flags = (saved?.Flags ?? 0) & ~OutOfSyncBitmap.FileFlags.Dirty;
                accounted = durable;
            }
            else if (saved is { } s)
            {
                _flags = s.Flags & ~OutOfSyncBitmap.FileFlags.Dirty;
                if ((s.Flags & OutOfSyncBitmap.FileFlags.Dirty) != 0)
                {
                    reason = "the link did not stop cleanly (its out-of-sync bitmap is unknown)";
                    // This node crashed as primary: what the peer lacks is in this node's log since the peer's last batch, or
                    // in the bits saved at the last start (marked before, e.g. by a verify); the peer adds what it holds beyond.
                    if (s.VolumeId == _volumeId && _options.History?.PositionIn(_volumeId, Guid.Empty) is { } position)
                    {
                        crashed = new HistoryBasis(_volumeId, Guid.Empty, position); // own history: any incarnation, below the floor
                        _savedMarks = new OutOfSyncBitmap(_bitmap.Blocks);
                        _savedMarks.Add(_bitmap);
                    }
                }
                else if (s.VolumeId != _volumeId) reason = "its out-of-sync bitmap belongs to another volume";
                else accounted = s.LastSequence;
            }
            else if (hadFile) reason = "its out-of-sync bitmap file is damaged";
            else if (durable == 0) accounted = 0; // a new volume: nothing written yet, the bitmap starts empty
            else reason = "the volume has data written before the link existed";
            if (accounted >= 0 && durable > accounted) reason = $"batches {accounted + 1}..{durable} were written while the link was not running";
            // Fewer batches than the link shipped: the cache lost some it had published (a power loss after a clean stop of the
            // link), and numbers new ones alike; the peer may hold what is gone here.
            else if (accounted >= 0 && durable < accounted) reason = $"the log ends at batch {durable}, before batch {accounted} the link had shipped";
            else if (accounted >= 0 && _firstSeenSequence > Math.Max(accounted, durable) + 1)
                reason = $"batches {Math.Max(accounted, durable) + 1}..{_firstSeenSequence - 1} were written before the link subscribed";
            if (_markAllAtStart)
            {
                reason ??= "a full resync was requested";
                _markAllAtStart = false;
            }
            _basis ??= _options.PeerKnownIdentical ? null : basis ?? crashed;
            if (_basis != crashed) _savedMarks = null; // a failover's basis (its full mark saved): the saved bits say nothing
            if (reason is not null && _basis is not null)
            {
                _bitmap.SetAll();
                _fullMarks++;
                _logger.LogInformation("volume {Volume}: every block is marked for {Peer} ({Reason}), until it connects and the logs narrow that", _options.Volume,
                    _options.PeerNode, reason);
            }
            else if (reason is not null) MarkAllLocked(reason);
            // A basis kept over a clean stop with a bitmap that is not all marked: it was narrowed before the stop (the peer had
            // not taken the resync's begin yet), and may hold marks no log records since (a verify's): the next narrowing adds.
            else if (_basis is not null && _bitmap.Count < _bitmap.Blocks) _narrowedAt = _fullMarks;
            // A clean stop kept where the peer stood in the log: it can still be caught up from there.
            else if (point is not null && _basis is null && !_options.PeerKnownIdentical && point.VolumeId == _volumeId && point.LastSequence == accounted &&
                     point.BitmapChecksum == loaded)
                RestoreCatchUpPointLocked(point);
            // Batches already seen by OnBatch moved _lastSequence on (and checked their own gap).
            _lastSequence = Math.Max(_lastSequence, Math.Max(accounted, durable));
            lock (_saveGate) _bitmap.Save(_options.StateDirectory, new OutOfSyncBitmap.Saved(_flags | OutOfSyncBitmap.FileFlags.Dirty, _volumeId, _lastSequence));
        }
        // Taken (or not to be trusted): a crash from here leaves the bitmap dirty, and a clean stop writes the point again.
        if (point is not null) DeleteCatchUpPoint();
        _loop = Task.Run(RunAsync);
    }

    /// <summary>Operator disconnect (drbdadm disconnect): leaves the barrier, tracks what the peer misses, and stays away until <see cref="Connect"/>.</summary>
    public void Disconnect()
    {
        CancellationTokenSource? cancel;
        lock (_gate)
        {
            _wantConnected = false;
            cancel = FailSessionLocked("disconnected by the operator");
            if (_connection != PeerConnection.Connected) _connection = PeerConnection.StandAlone;
        }
        CancelQuietly(cancel);
    }

    /// <summary>Operator connect (drbdadm connect): connects again, retrying.</summary>
    public void Connect()
    {
        lock (_gate)
        {
            if (_wantConnected) return;
            _wantConnected = true;
            if (_connection == PeerConnection.StandAlone) _connection = PeerConnection.Connecting;
        }
        _connectSignal.Release();
    }

    /// <summary>Marks every block out of sync (a peer with no common history): a full resync follows, at once if connected.</summary>
    public void MarkAllOutOfSync() => MarkAllOutOfSync(null);

    /// <summary>
    /// Marks every block out of sync, as above, after a failover: with a <paramref name="basis"/> (the former primary's volume
    /// and its last batch this node holds) the resync is narrowed at the next connect to the blocks either side changed
    /// since then, where both logs still cover it (see <see cref="ReplicaHistory"/>); it stays full where they do not.
    /// </summary>
    public void MarkAllOutOfSync(HistoryBasis? basis)
    {
        CancellationTokenSource? cancel;
        if (basis is not null) WriteBasis(_options.StateDirectory, basis);
        else DeleteBasis();
        lock (_gate)
        {
            _basis = basis;
            if (_loop is null) _markAllAtStart = true; // Start loads the saved bitmap over the marks
            if (basis is null) MarkAllLocked("a full resync was requested");
            else
            {
                _bitmap.SetAll();
                _fullMarks++;
                _foreignMarks++;
                _logger.LogInformation("volume {Volume}: every block is marked for {Peer} after the failover, until it connects and the logs narrow that", _options.Volume,
                    _options.PeerNode);
            }
            // The peer is no longer in sync: reconnecting starts the resync (and leaves the barrier meanwhile). A resync that is
            // still reading takes the marks along; one whose end is queued already (or a catch-up's) would put the peer in sync
            // with all of them set, so that session ends too.
            cancel = _resyncing && _resyncDoneFrame < 0 ? null : FailSessionLocked(null);
        }
        CancelQuietly(cancel);
    }

    /// <summary>
    /// Online verify found <paramref name="count"/> blocks from <paramref name="block"/> differing on the peer:
    /// they go into the out-of-sync bitmap and are resynced at the next reconnection (<c>peer resync</c>).
    /// The peer stays connected meanwhile (its disk state does not change until then).
    /// </summary>
    public void MarkOutOfSync(long block, int count)
    {
        lock (_gate)
        {
            _bitmap.Set(block, count);
            _foreignMarks++;
        }
    }

    /// <summary>
    /// Persists the bitmap now (still marked dirty): marks no log records (a verify's) must survive a crash of this node,
    /// whose restart narrows the resync to what the logs say plus the bits saved here (<see cref="Start"/>).
    /// </summary>
    public void SaveMarks()
    {
        OutOfSyncBitmap copy;
        OutOfSyncBitmap.Saved saved;
        lock (_gate)
        {
            if (_loop is null || Volatile.Read(ref _disposed) != 0) return;
            copy = new OutOfSyncBitmap(_bitmap.Blocks);
            copy.Add(_bitmap);
            saved = new OutOfSyncBitmap.Saved(_flags | OutOfSyncBitmap.FileFlags.Dirty, _volumeId, _lastSequence);
        }
        try
        {
            lock (_saveGate)
                if (Volatile.Read(ref _disposed) == 0) copy.Save(_options.StateDirectory, saved); // never over the clean save of a dispose
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("volume {Volume}: the out-of-sync marks for {Peer} could not be saved ({Message}); they are lost if this node crashes before the resync",
                _options.Volume, _options.PeerNode, e.Message);
        }
    }

    /// <summary>A session's cancellation may race with the session ending (and disposing it): that is fine.</summary>
    private static void CancelQuietly(CancellationTokenSource? cancel)
    {
        try
        {
            cancel?.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void MarkAllLocked(string reason)
    {
        _fullMarks++;
        _foreignMarks++;
        if (_bitmap.Count != _bitmap.Blocks)
            _logger.LogWarning("volume {Volume}: every block is marked out of sync for {Peer} ({Reason}): a full resync follows", _options.Volume,
                _options.PeerNode, reason);
        _bitmap.SetAll();
    }

    // ---- batches from the log ------------------------------------------------------------------

    private sealed class Subscriber(ReplicaLink link) : ILogSubscriber
    {
        // The link releases the batch itself, also when it fails: a failure must not reach the log's Publish, which takes a
        // throwing subscriber for one that kept the batch and releases it again (the ring's slots, and the shared copy the
        // next link is about to send, would be given back early).
        public void OnBatch(LoggedBatch batch)
        {
            try
            {
                link.OnBatch(batch);
            }
            catch (Exception e)
            {
                link.BatchFailed(e);
            }
        }
    }

    /// <summary>A batch could not be queued for the peer: the peer may miss it, so it is resynced in full.</summary>
    private void BatchFailed(Exception e)
    {
        CancellationTokenSource? cancel;
        lock (_gate)
        {
            MarkAllLocked($"a batch could not be queued for it: {e.Message}");
            cancel = FailSessionLocked("a batch could not be queued; the peer is resynced");
        }
        CancelQuietly(cancel);
    }

    /// <summary>On the flusher's thread: copy the batch into a frame (or mark its blocks), release it, never wait.</summary>
    private void OnBatch(LoggedBatch batch)
    {
        byte[]? buffer = null;   // the frame header, and the whole frame when the batch is small
        BatchCopy? shared = null; // a large batch's bytes, shared with the other links
        CancellationTokenSource? cancel = null;
        try
        {
            var header = batch.Header;
            var length = FrameHeader.Size + (int)header.SizeBytes;
            if (Volatile.Read(ref _streaming) && !Volatile.Read(ref _catchingUp)) (buffer, shared) = FrameOf(batch, length);
            lock (_gate)
            {
                var live = _streaming && !_catchingUp;
                _lastBatchEnd = batch.Address + header.SizeBytes;
                if (_lastSequence < 0) _firstSeenSequence = header.Sequence; // Start checks it against what the saved bitmap covers
                else if (header.Sequence > _lastSequence + 1)
                {
                    MarkAllLocked($"batches {_lastSequence + 1}..{header.Sequence - 1} were not published to the link");
                    cancel = FailSessionLocked("batches were missed; the peer is resynced"); // an in-sync peer must resync now
                }
                _lastSequence = Math.Max(_lastSequence, header.Sequence);
                if (_readFrom >= 0 && Touches(batch.Entries, _readFrom, _readCount)) _readInvalid = true;
                if (live && _frames.Bytes + length > _options.MaxLagBytes)
                {
                    cancel ??= FailSessionLocked($"the peer fell more than {_options.MaxLagBytes} bytes behind; it is disconnected and resynced when it reconnects " +
                                               "(raise max-lag-bytes or check the peer's disk and network)");
                    live = false;
                }
                if (live)
                {
                    if (buffer is null) (buffer, shared) = FrameOf(batch, length);
                    new FrameHeader(FrameKind.Batch, 1 + header.DataBlocks, _nextFrameId, 0, 0).Write(buffer);
                    _frames.Enqueue(new Frame
                    {
                        Buffer = buffer, Length = shared is null ? length : FrameHeader.Size, Payload = shared, Id = _nextFrameId++, Kind = FrameKind.Batch,
                        SequenceThrough = header.Sequence, LogAddress = batch.Address,
                    });
                    _queuedThrough = header.Sequence;
                    buffer = null;
                    shared = null;
                }
                else
                {
                    if (_markStartAddress < 0) (_markStartAddress, _markStartSequence) = (batch.Address, header.Sequence);
                    _bitmap.Set(batch.Entries);
                    _markedMeanwhile?.Set(batch.Entries);
                    _catchUpMarks?.Set(batch.Entries);
                }
            }
        }
        finally
        {
            batch.Release();
            if (buffer is not null) FrameBuffers.Return(buffer);
            shared?.Release();
        }
        CancelQuietly(cancel);
        _sendSignal.Set();
    }

    /// <summary>Batches up to this size (frame included) are copied whole into each link's frame; larger ones are copied once and shared.</summary>
    internal const int SharedCopyAbove = 64 << 10;

    /// <summary>
    /// A batch's frame for this link: a small batch copied behind the frame header (one send, and the shared pool's small
    /// arrays), a large one as a frame header of its own and the batch's bytes shared with every other link (<see cref="BatchCopy"/>).
    /// </summary>
    private static (byte[] Buffer, BatchCopy? Shared) FrameOf(LoggedBatch batch, int length) =>
        length <= SharedCopyAbove ? (CopyFrame(batch, length), null) : (FrameBuffers.Rent(FrameHeader.Size), BatchCopy.Share(batch));

    private static byte[] CopyFrame(LoggedBatch batch, int length)
    {
        var buffer = FrameBuffers.Rent(length);
        batch.HeaderBlock.CopyTo(buffer.AsSpan(FrameHeader.Size));
        var at = FrameHeader.Size + BlockSize;
        for (var i = 0; i < batch.Header.DataBlocks; i++, at += BlockSize) batch.DataBlock(i).CopyTo(buffer.AsSpan(at, BlockSize));
        return buffer;
    }

    private static bool Touches(ReadOnlySpan<LogEntry> entries, long from, int count)
    {
        foreach (var entry in entries)
            if (entry.Block < from + count && entry.Block + entry.BlockCount > from) return true;
        return false;
    }

    // ---- the connection -----------------------------------------------------------------------

    private async Task RunAsync()
    {
        var stopping = _stopping.Token;
        while (!stopping.IsCancellationRequested)
        {
            bool want;
            lock (_gate)
            {
                want = _wantConnected;
                _connection = want ? PeerConnection.Connecting : PeerConnection.StandAlone;
            }
            if (want)
            {
                try
                {
                    await RunSessionAsync(stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    return; // stopped mid-connect (a handshake the peer had not answered): a stop, not a failure to report
                }
                catch (Exception e)
                {
                    var problem = e is OperationCanceledException
                        ? $"connecting to {_options.PeerNode} timed out after {_options.AckTimeout.TotalSeconds:F1}s"
                        : Describe(e);
                    lock (_gate) _problem = problem;
                    _connectFailures.Log($"volume {_options.Volume}: replication to {_options.PeerNode}: {problem}; retrying every {_options.ReconnectInterval.TotalSeconds:F1}s");
                }
            }
            try
            {
                // Reconnect after the interval, or at once when Connect() is called.
                await _connectSignal.WaitAsync(want ? _options.ReconnectInterval : Timeout.InfiniteTimeSpan, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private string Describe(Exception e) => e switch
    {
        SocketException s => $"cannot reach {_options.PeerNode}: {s.Message} ({s.SocketErrorCode})",
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    private async Task RunSessionAsync(CancellationToken stopping)
    {
        var endpoint = await _options.ResolvePeer(stopping).ConfigureAwait(false);
        if (endpoint is null)
        {
            lock (_gate) _problem = $"the data endpoint of {_options.PeerNode} is unknown (the node is down or not in the cluster)";
            return;
        }
        using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stopping); // cancelled by FailSessionLocked's callers
        cancel.CancelAfter(_options.AckTimeout); // the handshake must be done by then
        await socket.ConnectAsync(endpoint, cancel.Token).ConfigureAwait(false);
        HistoryBasis? basis;
        ushort version;
        lock (_gate) (basis, version) = (_options.History is null ? null : _basis, _wireVersion);
        // Compared no later than this node holds that history now (its own: below its floor, which may have dropped since).
        if (basis is not null && version == Handshake.Version && _options.History!.PositionIn(basis.VolumeId, basis.Incarnation) is { } position)
            basis = basis with { Sequence = Math.Min(basis.Sequence, position) };
        else basis = null;
        await Handshake.SendAllAsync(socket, Handshake.Hello(_options.PrimaryNode.Length == 0 ? _options.Volume : $"{_options.Volume}@{_options.PrimaryNode}", _volumeId, Epoch,
            _cache.Incarnation, basis, version), cancel.Token).ConfigureAwait(false);
        if (basis is not null) cancel.CancelAfter(HistoryPatience); // the peer walks its log to answer
        var reply = new byte[Handshake.ReplySize];
        if (!await Handshake.ReadExactlyAsync(socket, reply.AsMemory(0, Handshake.ReplySizeV1), cancel.Token).ConfigureAwait(false))
            throw new IOException($"{_options.PeerNode} closed the connection during the handshake");
        if (version == Handshake.Version && BitConverter.ToUInt64(reply, 0) == Handshake.Magic &&
            (Handshake.Status)BitConverter.ToUInt16(reply, 8) == Handshake.Status.VersionMismatch)
        {
            // An older node (a rolling update): it answered in version 1. Greet it in version 1 from the next attempt on.
            lock (_gate) _wireVersion = Handshake.Version1;
            _logger.LogInformation("volume {Volume}: {Peer} speaks replication wire version 1 only; using it (no resync narrowing with it)", _options.Volume, _options.PeerNode);
            _connectSignal.Release();
            return;
        }
        if (version == Handshake.Version && !await Handshake.ReadExactlyAsync(socket, reply.AsMemory(Handshake.ReplySizeV1), cancel.Token).ConfigureAwait(false))
            throw new IOException($"{_options.PeerNode} closed the connection during the handshake");
        var (status, peerState, text, answer) = await ReadReplyAsync(socket, reply, version, cancel.Token).ConfigureAwait(false);
        if (status != Handshake.Status.Accepted)
        {
            lock (_gate) _problem = $"{_options.PeerNode} refused the connection: {text}";
            _connectFailures.Log($"volume {_options.Volume}: {_options.PeerNode} refused replication: {text}");
            return;
        }
        var narrowed = basis is not null && await NarrowAsync(basis, answer).ConfigureAwait(false);
        if (!cancel.TryReset()) return;

        long session;
        bool resync;
        CatchUpFrom? catchUp;
        lock (_gate)
        {
            if (!_wantConnected || stopping.IsCancellationRequested) return;
            // A peer known identical at a clean switchover got its data from the primary before this one: that is expected, once,
            // if it still says UpToDate (a peer that lost its disk since has no such state).
            // Such a peer still records the old primary's volume: an empty resync makes it record this one (resync done, UpToDate),
            // so a reconnect after a restart finds it following this node.
            var rebase = false;
            if (_peerKnownIdentical && peerState is { Disk: PeerDisk.UpToDate }) (_peerKnownIdentical, rebase) = (false, true);
            else if (_peerKnownIdentical)
            {
                _peerKnownIdentical = false;
                MarkAllLocked("the peer held this node's data at the clean demotion but has no UpToDate replica state now");
            }
            else if (narrowed) rebase = true; // the peer records this node as its primary at the resync's end, even an empty one
            else if (peerState is { } state && state.PrimaryVolumeId != _volumeId)
                MarkAllLocked($"the peer's data came from another primary volume ({state.PrimaryVolumeId})");
            else if (peerState is null && (_flags & OutOfSyncBitmap.FileFlags.PeerSeen) != 0)
                MarkAllLocked("the peer has no replica state although it was replicated to before (a new disk?)");
            _flags |= OutOfSyncBitmap.FileFlags.PeerSeen;
            session = ++_session;
            _sessionCancel = cancel;
            _streaming = true;
            _sessionEnd = null;
            _connection = PeerConnection.Connected;
            _latency.Reset();
            _receivedFrame = _durableFrame = _nextFrameId - 1;
            resync = _bitmap.Count > 0 || peerState?.Disk != PeerDisk.UpToDate || rebase;
            _catchUpDeclined = null;
            catchUp = resync && !rebase ? CatchUpStartLocked(peerState) : null;
            _orderedThrough = _tailAddress = -1; // taken: the session's end says again what the peer holds
            _catchUpSession = catchUp is not null;
            _queuedThrough = -1;
            if (resync)
            {
                _resyncing = true;
                _resyncDone = 0;
                _resyncTotal = _bitmap.Count * BlockSize;
                _resyncStarted = _rateStarted = Stopwatch.GetTimestamp();
                _rateBytes = 0;
                _resyncDoneFrame = -1;
            }
            if (catchUp is { } c)
            {
                // The peer stays consistent (it receives whole batches in order), only behind: Outdated until it has them all.
                _peerDisk = PeerDisk.Outdated;
                _catchingUp = _sessionOrdered = true;
                _receivedSequence = _durableSequence = c.Start - 1;
                (_catchUpStart, _catchUpNextAddress, _catchUpNextSequence) = (c.Address, c.Address, c.Sequence);
            }
            else if (resync)
            {
                _peerDisk = PeerDisk.Inconsistent;
                _sessionOrdered = false;
                StreamLiveLocked();
                EnqueueControlLocked(FrameKind.ResyncBegin, 0);
            }
            else
            {
                // Nothing marked: the peer has every batch through the last one durably.
                StreamLiveLocked();
                _sessionOrdered = true;
                _marksSeen = _foreignMarks;
                _receivedSequence = _durableSequence = _lastSequence;
                _peerDisk = PeerDisk.UpToDate;
                _peerInSync = true;
                _problem = null;
                JoinBarrierLocked();
                NotifyInSyncLocked();
            }
        }
        _logger.LogInformation("volume {Volume}: connected to {Peer} at {Endpoint}{Resync}", _options.Volume, _options.PeerNode, endpoint,
            catchUp is { } from ? $", catching up from this node's log from batch {from.Start} ({Status.OutOfSyncBytes} bytes out of sync)"
            : resync ? $", resyncing {Status.OutOfSyncBytes} bytes{_catchUpDeclined}" : "");
        _sendSignal.Set();

        var token = cancel.Token;
        var sender = Guard(session, SendLoopAsync(socket, session, token));
        var acks = Guard(session, AckLoopAsync(socket, session, token));
        var watchdog = Guard(session, WatchdogAsync(session, token));
        var resyncing = catchUp is { } start ? Guard(session, CatchUpAsync(session, start, token))
            : resync ? Guard(session, ResyncAsync(session, token)) : Task.CompletedTask;
        try
        {
            await Task.Delay(Timeout.Infinite, token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        socket.Close();
        _sendSignal.Set();
        await Task.WhenAll(sender, acks, watchdog, resyncing).ConfigureAwait(false);
        EndSession(session);
    }

    /// <summary>A peer's history answer as the link holds it: the batch compared at and the blocks changed there since.</summary>
    private sealed record PeerAnswer(long Sequence, OutOfSyncBitmap Blocks);

    private async Task<(Handshake.Status, ReplicaState?, string, PeerAnswer?)> ReadReplyAsync(Socket socket, byte[] reply, ushort version,
        CancellationToken cancellationToken)
    {
        if (BitConverter.ToUInt64(reply, 0) != Handshake.Magic) throw new InvalidDataException($"{_options.PeerNode} did not answer as a replica receiver");
        var status = (Handshake.Status)BitConverter.ToUInt16(reply, 8);
        var textLength = BitConverter.ToUInt16(reply, 40);
        if (textLength > 4096) throw new InvalidDataException($"{_options.PeerNode} answered with a {textLength}-byte status text");
        var text = new byte[textLength];
        if (textLength > 0 && !await Handshake.ReadExactlyAsync(socket, text, cancellationToken).ConfigureAwait(false))
            throw new IOException($"{_options.PeerNode} closed the connection during the handshake");
        ReplicaState? state = reply[11] == 0 ? null
            : new ReplicaState((PeerDisk)reply[10], BitConverter.ToInt64(reply, 16), new Guid(reply.AsSpan(24, 16)), DateTimeOffset.UtcNow);
        PeerAnswer? answer = null;
        if (version == Handshake.Version && reply[42] != 0)
        {
            var runs = BitConverter.ToInt32(reply, 56);
            if (runs is < 0 or > Handshake.MaxRuns) throw new InvalidDataException($"{_options.PeerNode} answered with {runs} runs of changed blocks");
            var encoded = new byte[runs * Handshake.RunSize];
            if (!await Handshake.ReadExactlyAsync(socket, encoded, cancellationToken).ConfigureAwait(false))
                throw new IOException($"{_options.PeerNode} closed the connection during the handshake");
            OutOfSyncBitmap? blocks = new OutOfSyncBitmap(_bitmap.Blocks);
            for (var i = 0; i < runs; i++)
            {
                var start = BitConverter.ToInt64(encoded, i * Handshake.RunSize);
                var count = BitConverter.ToInt32(encoded, i * Handshake.RunSize + 8);
                if (start < 0 || count <= 0 || start > _bitmap.Blocks - count)
                {
                    // Another size there (a resize on one node?): its answer is not used, the resync stays full.
                    _logger.LogWarning("volume {Volume}: {Peer} answered with changed blocks {Start}+{Count}, beyond the volume; a full resync", _options.Volume,
                        _options.PeerNode, start, count);
                    blocks = null;
                    break;
                }
                blocks.Set(start, count);
            }
            if (blocks is not null) answer = new PeerAnswer(BitConverter.ToInt64(reply, 48), blocks);
        }
        return (status, state, System.Text.Encoding.UTF8.GetString(text), answer);
    }

    private static readonly TimeSpan HistoryPatience = TimeSpan.FromSeconds(90);
    private const string BasisFile = "history-basis";

    /// <summary>
    /// After a failover or a crash of this node (a <paramref name="basis"/> is set): replaces the full mark with what the
    /// two logs say may differ, the peer's <paramref name="answer"/> and this node's own changes since the same batch, plus
    /// what was published meanwhile (and, after a crash, the bits saved at the last start). False when either side cannot
    /// tell: the resync stays full.
    /// </summary>
    private async Task<bool> NarrowAsync(HistoryBasis basis, PeerAnswer? answer)
    {
        if (answer is not null && (answer.Sequence < 0 || answer.Sequence > basis.Sequence))
        {
            _logger.LogWarning("volume {Volume}: {Peer} compared at batch {Sequence}, past the {Basis} asked: its answer is not used (a full resync)", _options.Volume,
                _options.PeerNode, answer.Sequence, basis.Sequence);
            answer = null;
        }
        if (answer is null || _options.History is not { } history)
        {
            _logger.LogWarning("volume {Volume}: {Peer} holds no part of {Whose} history its log still covers: a full resync", _options.Volume,
                _options.PeerNode, Whose(basis));
            return false;
        }
        long fullMarks;
        lock (_gate)
        {
            _markedMeanwhile = new OutOfSyncBitmap(_bitmap.Blocks);
            fullMarks = _fullMarks;
        }
        List<(long Start, int Count)>? own;
        try
        {
            own = await history.ChangedSinceAsync(basis.VolumeId, basis.Incarnation, answer.Sequence).ConfigureAwait(false) is { } changed
                ? Handshake.Runs(changed)
                : null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _logger.LogWarning("volume {Volume}: this node's log could not be read for the resync of {Peer} ({Message}): a full resync", _options.Volume,
                _options.PeerNode, e.Message);
            own = null;
        }
        long count;
        lock (_gate)
        {
            var meanwhile = _markedMeanwhile;
            _markedMeanwhile = null;
            // The basis changed meanwhile (another failover: the next connect asks again), or every block was marked for another reason.
            if (own is null || _basis is null || _basis.VolumeId != basis.VolumeId || _fullMarks != fullMarks)
            {
                if (own is null)
                    _logger.LogWarning("volume {Volume}: this node's log no longer covers batch {Sequence} of {Whose} history: a full resync of {Peer}",
                        _options.Volume, answer.Sequence, Whose(basis), _options.PeerNode);
                return false;
            }
            // The first narrowing after a full mark replaces it; a later one (the connection ended before the peer took the
            // resync's begin) adds to what the bitmap holds now: marks no log records (a verify's) stay.
            if (_narrowedAt != _fullMarks) _bitmap.Clear(0, _bitmap.Blocks);
            _narrowedAt = _fullMarks;
            foreach (var (start, blocks) in own) _bitmap.Set(start, blocks);
            _bitmap.Add(answer.Blocks);
            _bitmap.Add(meanwhile!);
            if (_savedMarks is { } saved) _bitmap.Add(saved);
            _savedMarks = null;
            count = _bitmap.Count;
        }
        _logger.LogInformation("volume {Volume}: the logs narrow the resync of {Peer} to {Blocks} blocks ({Own} changed here, {Theirs} there since batch {Sequence} " +
                               "of {Whose} history) instead of a full resync", _options.Volume, _options.PeerNode, count, own.Sum(r => (long)r.Count), answer.Blocks.Count, answer.Sequence,
            Whose(basis));
        return true;
    }

    private string Whose(HistoryBasis basis) => basis.VolumeId == _volumeId ? "this node's" : "the former primary's";

    private void DeleteBasis()
    {
        try
        {
            File.Delete(Path.Combine(_options.StateDirectory, BasisFile));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("volume {Volume}: {Message}", _options.Volume, e.Message);
        }
    }

    private static HistoryBasis? ReadBasis(string directory)
    {
        try
        {
            var parts = File.ReadAllText(Path.Combine(directory, BasisFile)).Split(' ');
            return new HistoryBasis(Guid.Parse(parts[0]), Guid.Parse(parts[1]), long.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is FormatException or IndexOutOfRangeException or OverflowException or IOException or UnauthorizedAccessException)
        {
            return null; // damaged: no narrowing, the resync stays full
        }
    }

    private static void WriteBasis(string directory, HistoryBasis basis)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.Replace(Path.Combine(directory, BasisFile),
            System.Text.Encoding.ASCII.GetBytes(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{basis.VolumeId} {basis.Incarnation} {basis.Sequence}")));
    }

    /// <summary>A session task that fails ends the session with its error as the link's problem.</summary>
    private async Task Guard(long session, Task task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            CancellationTokenSource? cancel;
            lock (_gate)
            {
                if (session != _session) return;
                cancel = FailSessionLocked(e is OperationCanceledException ? null : Describe(e));
            }
            CancelQuietly(cancel);
            if (e is not OperationCanceledException)
                _logger.LogWarning("volume {Volume}: replication to {Peer} failed: {Problem}", _options.Volume, _options.PeerNode, Describe(e));
        }
    }

    /// <summary>Stops streaming (batches go to the bitmap from now on) and leaves the barrier; the caller cancels the returned session outside the lock.</summary>
    private CancellationTokenSource? FailSessionLocked(string? problem)
    {
        if (!_streaming) return null;
        _streaming = false;
        if (problem is not null) _problem = problem;
        _sessionEnd = problem;
        _peerInSync = false;
        if (_peerDisk == PeerDisk.UpToDate) _peerDisk = PeerDisk.Outdated; // it misses every batch from now on
        // No longer connected from here (not only once the session's tasks have ended): the quorum fence counts connected
        // peers, and a FLUSH that this leave completes must not count this peer towards a majority it no longer gives.
        _connection = _wantConnected ? PeerConnection.Connecting : PeerConnection.StandAlone;
        // Last: leaving the barrier may complete FLUSH waiters on this thread, and what they see of this
        // link (the volume marks writes a peer lacks before a FLUSH is acknowledged) must be the peer lacking data.
        LeaveBarrierLocked();
        var cancel = _sessionCancel;
        _sessionCancel = null;
        return cancel;
    }

    /// <summary>After every session task has stopped: what the peer did not acknowledge durable goes into the bitmap.</summary>
    private void EndSession(long session)
    {
        string why;
        lock (_gate)
        {
            if (session != _session) return;
            FailSessionLocked(null);
            why = _sessionEnd is { } reason ? $" ({reason})" : "";
            KeepCatchUpPointLocked();
            while (_frames.Count > 0)
            {
                ref var frame = ref _frames[0];
                MarkFrameLocked(ref frame);
                _frames.Dequeue();
            }
            _readFrom = -1;
            _resyncing = false;
            _resyncDoneFrame = -1;
            _connection = _wantConnected ? PeerConnection.Connecting : PeerConnection.StandAlone;
            _wireVersion = Handshake.Version; // the peer may have been upgraded by the time it is back
        }
        _logger.LogInformation("volume {Volume}: disconnected from {Peer}{Reason}; {Bytes} bytes out of sync", _options.Volume, _options.PeerNode, why,
            Status.OutOfSyncBytes);
    }

    private void MarkFrameLocked(ref Frame frame)
    {
        switch (frame.Kind)
        {
            case FrameKind.Batch:
                var headerBlock = frame.Payload is { } shared ? shared.HeaderBlock : frame.Buffer.AsSpan(FrameHeader.Size, BlockSize);
                if (!LogFormat.TryReadHeader(headerBlock, _volumeId, out _, _entries))
                    throw new InvalidOperationException("a batch frame in the send buffer has a bad header (memory corruption?)");
                var count = BitConverter.ToInt32(headerBlock[12..]);
                _bitmap.Set(_entries.AsSpan(0, count));
                break;
            case FrameKind.ResyncData:
                _bitmap.Set(frame.Block, frame.Blocks);
                break;
        }
    }

    /// <summary>Queues a control frame; <paramref name="sequenceThrough"/>: what the peer holds once it is durable there (default: the last batch).</summary>
    private long EnqueueControlLocked(FrameKind kind, long block, long? sequenceThrough = null)
    {
        var buffer = FrameBuffers.Rent(FrameHeader.Size);
        var id = _nextFrameId++;
        new FrameHeader(kind, 0, id, block, 0).Write(buffer);
        _frames.Enqueue(new Frame { Buffer = buffer, Length = FrameHeader.Size, Id = id, Kind = kind, SequenceThrough = sequenceThrough ?? _lastSequence });
        return id;
    }

    private async Task SendLoopAsync(Socket socket, long session, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Frame frame;
            bool any;
            lock (_gate)
            {
                if (session != _session || !_streaming) return;
                any = _frames.TryTakeNext(Stopwatch.GetTimestamp(), out frame);
            }
            if (!any)
            {
                await _sendSignal.WaitAsync().ConfigureAwait(false);
                continue;
            }
            // The buffer stays in the queue until the peer acknowledges it durable, or the session ends after this loop.
            await Handshake.SendAllAsync(socket, frame.Buffer.AsMemory(0, frame.Length), cancellationToken).ConfigureAwait(false);
            if (frame.Payload is { } payload)
                for (var c = 0; c < payload.ChunkCount; c++) await Handshake.SendAllAsync(socket, payload.Chunk(c), cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task AckLoopAsync(Socket socket, long session, CancellationToken cancellationToken)
    {
        var buffer = new byte[Ack.Size];
        while (true)
        {
            if (!await Handshake.ReadExactlyAsync(socket, buffer, cancellationToken).ConfigureAwait(false))
                throw new IOException($"{_options.PeerNode} closed the replication connection");
            if (!Ack.TryRead(buffer, out var kind, out var frameId)) throw new InvalidDataException($"{_options.PeerNode} sent a damaged acknowledgement");
            OnAck(session, kind, frameId);
        }
    }

    private void OnAck(long session, AckKind kind, long frameId)
    {
        var now = Stopwatch.GetTimestamp();
        lock (_gate)
        {
            if (session != _session || !_streaming) return;
            if (frameId >= _nextFrameId) throw new InvalidDataException($"{_options.PeerNode} acknowledged frame {frameId}, which was never sent");
            var index = _frames.IndexOf(frameId);
            // A frame still waiting to be sent cannot have arrived: its buffer must not go back to the pool under the sender.
            if (index >= _frames.Shipped) throw new InvalidDataException($"{_options.PeerNode} acknowledged frame {frameId}, which was not sent yet");
            if (kind == AckKind.Received)
            {
                if (frameId <= _receivedFrame) return;
                _receivedFrame = frameId;
                if (index < 0) return; // durable already
                ref var frame = ref _frames[index];
                _receivedSequence = Math.Max(_receivedSequence, frame.SequenceThrough);
                if (_protocol != ReplicationProtocol.C && frame.Kind == FrameKind.Batch) _latency.Record(Stopwatch.GetElapsedTime(frame.ShippedAt, now).TotalMicroseconds);
                if (_protocol == ReplicationProtocol.B) _participant?.Advance(_receivedSequence);
                return;
            }
            if (frameId <= _durableFrame) return;
            _durableFrame = frameId;
            if (_receivedFrame < frameId) _receivedFrame = frameId;
            if (index >= 0 && _protocol == ReplicationProtocol.C)
                _latency.Record(Stopwatch.GetElapsedTime(_frames[index].ShippedAt, now).TotalMicroseconds);
            while (_frames.Count > 0 && _frames[0].Id <= frameId)
            {
                _durableSequence = Math.Max(_durableSequence, _frames[0].SequenceThrough);
                _frames.Dequeue();
            }
            _receivedSequence = Math.Max(_receivedSequence, _durableSequence);
            if (_resyncDoneFrame >= 0 && frameId >= _resyncDoneFrame)
            {
                _resyncDoneFrame = -1;
                InSyncLocked();
            }
            if (_protocol == ReplicationProtocol.C) _participant?.Advance(_durableSequence);
            else if (_protocol == ReplicationProtocol.B) _participant?.Advance(_receivedSequence);
        }
    }

    /// <summary>The resync or catch-up is done and durable at the peer: it is UpToDate, and what FLUSH waits for again.</summary>
    private void InSyncLocked()
    {
        _resyncing = false;
        _peerDisk = PeerDisk.UpToDate;
        _peerInSync = true;
        _sessionOrdered = true; // from here every batch is shipped in order, and nothing else
        _problem = null; // the last problem stays visible until the peer is in sync again
        _logger.LogInformation("volume {Volume}: {What} of {Peer} finished ({Bytes} bytes{Log}); it is UpToDate", _options.Volume,
            _catchUpSession ? "catch-up" : "resync", _options.PeerNode, _resyncDone, _catchUpSession ? " of log" : "");
        JoinBarrierLocked();
        NotifyInSyncLocked();
    }

    /// <summary>Tells <see cref="ReplicaLinkOptions.PeerInSync"/>, outside the lock: the peer is UpToDate and in the barrier.</summary>
    private void NotifyInSyncLocked()
    {
        _savedMarks = null;
        if (_basis is not null)
        {
            _basis = null; // the peer follows this node now: its resync needs no narrowing any more
            DeleteBasis();
        }
        if (_options.PeerInSync is { } inSync) ThreadPool.QueueUserWorkItem(static action => action(), inSync, preferLocal: false);
    }

    private void JoinBarrierLocked()
    {
        if (_protocol == ReplicationProtocol.A || !_peerInSync || !_streaming || _participant is not null) return;
        _participant = _cache.Barrier.Join(_participantName, _protocol == ReplicationProtocol.C ? _durableSequence : _receivedSequence);
    }

    private void LeaveBarrierLocked()
    {
        if (_participant is null) return;
        _cache.Barrier.Leave(_participant);
        _participant = null;
    }

    /// <summary>A connected peer that leaves a shipped frame unacknowledged longer than the ack timeout is disconnected.</summary>
    private async Task WatchdogAsync(long session, CancellationToken cancellationToken)
    {
        var period = TimeSpan.FromTicks(Math.Max(_options.AckTimeout.Ticks / 4, TimeSpan.FromMilliseconds(20).Ticks));
        while (true)
        {
            await Task.Delay(period, cancellationToken).ConfigureAwait(false);
            lock (_gate)
            {
                if (session != _session || !_streaming) return;
                if (_frames.Shipped == 0 || Stopwatch.GetElapsedTime(_frames[0].ShippedAt) <= _options.AckTimeout) continue;
            }
            throw new TimeoutException($"{_options.PeerNode} did not acknowledge a frame within {_options.AckTimeout.TotalSeconds:F1}s; " +
                                       "it is disconnected so FLUSH does not wait for it");
        }
    }

    // ---- resync --------------------------------------------------------------------------------

    /// <summary>
    /// Reads the marked blocks from the cache in runs and queues them as resync frames between the batches.
    /// A run is read with no lock held; a batch touching it meanwhile invalidates the read (checked
    /// under the lock that orders the send buffer), so a resync frame never overtakes a newer batch.
    /// </summary>
    private async Task ResyncAsync(long session, CancellationToken cancellationToken)
    {
        var cursor = 0L;
        var logged = false; // every write the resync has read is in the log (see the end)
        // Resync uses at most half the send buffer, so batches always find room.
        var runBlocks = (int)Math.Clamp(_options.MaxLagBytes / 2 / BlockSize, 1, ResyncRunBlocks);
        while (true)
        {
            while (true)
            {
                lock (_gate)
                {
                    if (session != _session || !_streaming) return;
                    if (_frames.Bytes + runBlocks * BlockSize <= _options.MaxLagBytes / 2) break;
                }
                await Task.Delay(2, cancellationToken).ConfigureAwait(false);
            }
            long start;
            int count;
            bool done;
            lock (_gate)
            {
                if (session != _session || !_streaming) return;
                done = !_bitmap.NextRun(cursor, runBlocks, out start, out count) && !_bitmap.NextRun(0, runBlocks, out start, out count);
                if (done && logged)
                {
                    // Everything resynced is queued, and in the log: the peer flushes and is then UpToDate through the last batch before this frame.
                    _resyncDoneFrame = EnqueueControlLocked(FrameKind.ResyncDone, _lastSequence);
                    _marksSeen = _foreignMarks; // the bitmap is empty: what is marked from here on is new
                    break;
                }
                if (!done)
                {
                    logged = false;
                    _readFrom = start;
                    _readCount = count;
                    _readInvalid = false;
                }
            }
            if (done)
            {
                // A resync read may have returned writes not in the log yet (still in the ring). They must be in a batch at or
                // before the one the peer is told it is UpToDate through, or its next history checkpoint would name data no
                // log holds (lost if this node dies before writing them). So what was accepted before the last read is
                // written out first (a FLUSH of the cache), and the bitmap looked at again.
                // (Not left to the cache's own wait, which a write-back FLUSH does not cancel: the session must be able to end.)
                await _cache.FlushAsync(cancellationToken).AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);
                logged = true;
                continue;
            }
            var length = FrameHeader.Size + count * BlockSize;
            var buffer = FrameBuffers.Rent(length);
            var queued = false;
            try
            {
                await _cache.ReadAsync(start * BlockSize, buffer.AsMemory(FrameHeader.Size, count * BlockSize), cancellationToken).ConfigureAwait(false);
                var crc = Crc32C.Compute(buffer.AsSpan(FrameHeader.Size, count * BlockSize));
                if (AfterResyncRead is { } hook) await hook(start, count).ConfigureAwait(false);
                lock (_gate)
                {
                    _readFrom = -1;
                    if (session != _session || !_streaming) return;
                    if (_readInvalid) continue; // a newer batch of these blocks is queued already: read them again
                    var id = _nextFrameId++;
                    new FrameHeader(FrameKind.ResyncData, count, id, start, crc).Write(buffer);
                    _frames.Enqueue(new Frame
                    {
                        Buffer = buffer, Length = length, Id = id, Kind = FrameKind.ResyncData, SequenceThrough = _lastSequence, Block = start, Blocks = count,
                    });
                    queued = true;
                    _bitmap.Clear(start, count);
                    _resyncDone += (long)count * BlockSize;
                    _rateBytes += (long)count * BlockSize;
                    cursor = start + count;
                }
            }
            finally
            {
                if (!queued) FrameBuffers.Return(buffer);
            }
            _sendSignal.Set();
            await ThrottleAsync(cancellationToken).ConfigureAwait(false);
        }
        _sendSignal.Set();
    }

    /// <summary>Waits until the bytes resynced since the rate was last set are within the rate.</summary>
    private async ValueTask ThrottleAsync(CancellationToken cancellationToken)
    {
        TimeSpan wait;
        lock (_gate)
        {
            if (_rate <= 0) return;
            var due = TimeSpan.FromSeconds((double)_rateBytes / _rate);
            wait = due - Stopwatch.GetElapsedTime(_rateStarted);
        }
        if (wait > TimeSpan.FromMilliseconds(1)) await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
    }

    // ---- closing -------------------------------------------------------------------------------

    /// <summary>
    /// Stops the link: waits briefly (up to the ack timeout) for the peer to acknowledge what is queued,
    /// disconnects, unsubscribes, and persists the bitmap clean. Dispose the link after closing the cache,
    /// so the cache's last batches are shipped or marked.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        var until = Stopwatch.GetTimestamp() + (long)(_options.AckTimeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < until)
        {
            lock (_gate)
                if (!_streaming || _frames.Count == 0) break;
            await Task.Delay(5).ConfigureAwait(false);
        }
        CancellationTokenSource? cancel;
        lock (_gate)
        {
            _wantConnected = false;
            cancel = FailSessionLocked(null);
        }
        CancelQuietly(cancel);
        _stopping.Cancel();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _subscription?.Dispose();
        lock (_gate)
        {
            _connection = PeerConnection.StandAlone;
            if (_loop is not null)
                lock (_saveGate)
                {
                    // The point first: a crash before the bitmap's clean save leaves the bitmap dirty, and the point unused.
                    SaveCatchUpPointLocked();
                    _bitmap.Save(_options.StateDirectory, new OutOfSyncBitmap.Saved(_flags, _volumeId, _lastSequence));
                }
        }
        _stopping.Dispose();
    }
}
