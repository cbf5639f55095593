using System.Collections.Concurrent;
using ActorCache.Blocks;
using Microsoft.Win32.SafeHandles;

namespace ActorCache.Cache;

/// <summary>
/// Where the log lives: a linear address space cut into fixed-size segments. Tests put recording or
/// fault-injecting media under the log the way dm-log-writes sits under a file system.
/// </summary>
public interface ILogMedium : IDisposable
{
    long SegmentSize { get; }

    /// <summary>Writes buffers back to back at <paramref name="address"/>; never crosses a segment end.</summary>
    void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers);

    /// <summary>Makes every completed write durable (fdatasync of each segment written since the last sync).</summary>
    void Sync();

    /// <summary>
    /// Makes every segment durable, whoever wrote it: after recovery, what a killed process left in the page
    /// cache is replayed and served, so it must be on disk before new records claim it is.
    /// </summary>
    void SyncAll() => Sync();

    /// <summary>Reads within one segment only if it needs no disk I/O (page cache); false otherwise, and then nothing is promised.</summary>
    bool TryReadWithoutWaiting(long address, Span<byte> destination) => false;

    /// <summary>
    /// Reads what is at <paramref name="address"/>; false when a segment it needs is gone (released
    /// meanwhile), in which case the caller looks the block up again.
    /// </summary>
    bool TryRead(long address, Span<byte> destination);

    /// <summary>
    /// The open file of a segment, for a copy inside the kernel (the destager's copy_file_range), or null
    /// when the medium has none (test media: the destager then reads and writes).
    /// </summary>
    SafeFileHandle? SegmentHandle(long segment) => null;

    /// <summary>Forgets a range inside one segment (after a torn tail is cut), so stale records there can never be mistaken for new ones.</summary>
    void Discard(long address, long length);

    /// <summary>
    /// False only when the segment's file is known to read as zeroes past what this process wrote (a
    /// new file, not a recycled one): then the flusher needs no end-of-log block after a batch.
    /// </summary>
    bool MayHoldStaleRecords(long segment) => true;

    /// <summary>
    /// A commit just made the log durable up to <paramref name="tail"/>: the medium may get the space past
    /// it ready, off the flusher's thread, so the next commits there cost less (see <see cref="SegmentFiles"/>).
    /// </summary>
    void PrepareAhead(long tail)
    {
    }

    /// <summary>Gives up a whole segment the log no longer needs (deleted, or kept to be reused as a later one).</summary>
    void Release(long segment);

    /// <summary>Released segment files kept to be reused (they hold disk space the log can write into again).</summary>
    int SpareCount => 0;

    IReadOnlyList<long> Segments { get; }
}

/// <summary>
/// The real medium: one preallocated file per segment in the volume's log directory. Released segments
/// are kept as spares (as long as the files stay within the log's capacity, which is the log's own space either way) and renamed
/// into place as later segments, the way databases recycle WAL files: a new file's blocks are only reserved (unwritten extents), so every
/// fdatasync after writing into it must also commit the file system's journal; a recycled file's blocks
/// are written already (as far as its earlier life wrote), and an fdatasync flushes data only. Stale records in a recycled file carry
/// older sequence numbers, which recovery never takes for the next record.
/// </summary>
public sealed class SegmentFiles : ILogMedium
{
    private readonly string _directory;
    private readonly Stack<string> _spares = new();
    private readonly HashSet<long> _fresh = []; // created empty by this process: nothing stale in them
    private readonly ConcurrentDictionary<long, SafeFileHandle> _open = new();
    private readonly HashSet<long> _unsynced = [];
    private readonly List<long> _syncing = []; // reused by Sync (only the flusher syncs), so a commit allocates nothing
    private readonly Lock _gate = new();
    private bool _directoryDirty;
    private readonly Lock _writeGate = new();
    private LibC.IoVector[] _vectors = new LibC.IoVector[2 + 2048];
    private System.Buffers.MemoryHandle[] _pins = new System.Buffers.MemoryHandle[2 + 2048];

    private readonly long _maxFiles;

    /// <param name="maxFiles">Most segment files (live and spare) to keep on disk: a spare is kept only below it, so the log's files never take more than its capacity.</param>
    public SegmentFiles(string directory, long segmentSize, long maxFiles = long.MaxValue)
    {
        _zeroAhead = new SignalledWorker($"log-zero-ahead {Path.GetFileName(directory)}", ZeroAhead);
        _maxFiles = Math.Max(1, maxFiles);
        if (segmentSize % LogFormat.BlockSize != 0 || segmentSize < 2 * LogFormat.BlockSize)
            throw new ArgumentException($"segment size {segmentSize} must be a multiple of 4 KiB and at least 8 KiB");
        _directory = directory;
        SegmentSize = segmentSize;
        LibC.CreateDirectoryDurably(directory);
        foreach (var segment in Segments) Handle(segment, create: false);
        foreach (var spare in Directory.EnumerateFiles(directory, "spare-*.log"))
        {
            // A capacity lowered since (the setting, or the file system's share): the spares past it go, or other logs lack the space.
            if (RoomForSpare) _spares.Push(spare);
            else
                try
                {
                    File.Delete(spare);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Left in place: the space it holds is missed until it can go (the file system full is then a full log), not the volume.
                }
        }
    }

    public long SegmentSize { get; }

    /// <summary>One more spare keeps the log's files (segments open and spares) within its capacity.</summary>
    private bool RoomForSpare => _open.Count + _spares.Count < _maxFiles;

    public IReadOnlyList<long> Segments =>
        [.. Directory.EnumerateFiles(_directory, "segment-*.log")
            .Select(f => long.TryParse(Path.GetFileNameWithoutExtension(f)["segment-".Length..], out var n) ? n : -1)
            .Where(n => n >= 0).Order()];

    private string PathOf(long segment) => Path.Combine(_directory, $"segment-{segment:D10}.log");

    private SafeFileHandle? Handle(long segment, bool create)
    {
        if (_open.TryGetValue(segment, out var handle)) return handle;
        lock (_gate)
        {
            if (_open.TryGetValue(segment, out handle)) return handle;
            var path = PathOf(segment);
            if (!create && !File.Exists(path)) return null;
            if (create && !File.Exists(path) && _spares.TryPop(out var spare))
            {
                File.Move(spare, path); // durable with the directory fsync of the next Sync, like a new file
                _directoryDirty = true;
            }
            var existed = File.Exists(path);
            try
            {
                handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
            }
            catch (IOException e)
            {
                throw new BlockTargetException(e.HResult == LibC.ENOSPC ? BlockError.NoSpace : BlockError.Io,
                    $"cannot open log segment {path}: {e.Message}", e);
            }
            if (create && RandomAccess.GetLength(handle) < SegmentSize)
            {
                // Reserve the whole segment now: a full log disk shows up here, before any record is half written.
                var errno = LibC.Allocate(handle, 0, 0, SegmentSize);
                if (errno == LibC.EOPNOTSUPP) RandomAccess.SetLength(handle, SegmentSize);
                else if (errno != 0)
                {
                    handle.Dispose();
                    File.Delete(path);
                    BlockThrow.FromErrno(errno, "reserving log segment", path);
                }
                _directoryDirty = true;
                if (!existed)
                {
                    _fresh.Add(segment);
                    _writtenTo[segment] = 0;
                }
            }
            _open[segment] = handle;
            return handle;
        }
    }

    public void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
    {
        var segment = address / SegmentSize;
        var handle = Handle(segment, create: true)!;
        int errno;
        lock (_writeGate)
        {
            // Our own pwritev over handles pinned for the call: RandomAccess's gathered write allocates per call.
            if (_vectors.Length < buffers.Count)
            {
                _vectors = new LibC.IoVector[buffers.Count];
                _pins = new System.Buffers.MemoryHandle[buffers.Count];
            }
            for (var i = 0; i < buffers.Count; i++)
            {
                _pins[i] = buffers[i].Pin();
                unsafe
                {
                    _vectors[i] = new LibC.IoVector { Base = _pins[i].Pointer, Length = (nuint)buffers[i].Length };
                }
            }
            long length = 0;
            try
            {
                for (var i = 0; i < buffers.Count; i++) length += buffers[i].Length;
                errno = LibC.WriteGathered(handle, _vectors.AsSpan(0, buffers.Count), address % SegmentSize);
            }
            finally
            {
                for (var i = 0; i < buffers.Count; i++) _pins[i].Dispose();
            }
            if (segment != _writeSegment || address % SegmentSize + length > _writeEnd)
            {
                _writeSegment = segment;
                _writeEnd = address % SegmentSize + length;
            }
        }
        if (errno != 0) BlockThrow.FromErrno(errno, "log write", PathOf(segment));
        lock (_gate) _unsynced.Add(segment);
    }

    // ---- zero-ahead --------------------------------------------------------------------------------
    //
    // A new segment file is only reserved (fallocate: unwritten extents), so the fdatasync of a commit
    // into it must also commit the file system's journal, which turns the extents it wrote into written
    // ones: 232-241 us against 144-148 us for the same 8 KiB append + fdatasync into a written file
    // (tests/bench/bounds.sh). So once a commit is made, a thread of the medium's own writes zeroes ahead
    // of the tail where the segment's file is not written yet and fdatasyncs them (one journal commit for
    // a whole chunk), the way PostgreSQL fills WAL segments before use. That is all of a new file, and
    // the end of a recycled one that its earlier life left reserved (a batch that did not fit there went
    // to the next segment: up to max-batch per segment), and the rest of the segment a node goes on appending
    // to after recovery cut a torn tail there (see WrittenTo). Only commits ask for it: a stream of writes without FLUSH
    // never commits per write and is not charged the extra bandwidth. It never writes where the flusher
    // has written: both write under the write lock, and the zeroes start past the furthest write.

    /// <summary>How far past the tail zeroes are kept written, and how much is zeroed under the write lock at once.</summary>
    internal const long ZeroAheadBytes = 2 << 20, ZeroChunkBytes = 256 << 10;

    private static readonly ReadOnlyMemory<byte> ZeroChunk = GC.AllocateArray<byte>((int)ZeroChunkBytes, pinned: true);
    private readonly SignalledWorker _zeroAhead;
    private long _writeSegment = -1, _writeEnd; // the furthest write, data or zeroes (under _writeGate)
    private long _zeroAheadTail = -1;           // the newest commit's tail that asked for zeroes ahead
    private readonly ConcurrentDictionary<long, long> _writtenTo = new(); // per segment appended to: see WrittenTo

    public void PrepareAhead(long tail)
    {
        if (_zeroAheadOff) return;
        var segment = tail / SegmentSize;
        var ready = Math.Min(SegmentSize, tail % SegmentSize + ZeroAheadBytes / 2);
        // Written already, by an earlier life of the file or by zeroes: no signal (the common case; otherwise one per
        // ZeroChunkBytes of log at most). A segment not looked at yet is looked at on the zero-ahead's thread.
        if (_writtenTo.TryGetValue(segment, out var writtenTo) && writtenTo >= ready) return;
        if (Volatile.Read(ref _writeSegment) == segment && Volatile.Read(ref _writeEnd) >= ready) return;
        Volatile.Write(ref _zeroAheadTail, tail);
        _zeroAhead.Signal();
    }

    /// <summary>
    /// How far from its start a segment's file is written already, looked up once per segment: where its first hole or
    /// unwritten extent begins (SEEK_HOLE). 0 for a new file; for a recycled one, about where its earlier life's last batch
    /// ended; for the segment a node appends to after recovery cut a torn tail there, about that tail (a clean stop leaves
    /// the zeroes written ahead of it). Past it, zeroes ahead pay off. Pages in the page
    /// cache count as written (a read past the tail may move it a little further): that costs a few commits a journal
    /// commit, never a record. Where the file system cannot say, the file counts as written (no zeroes ahead).
    /// </summary>
    private long WrittenTo(long segment, SafeFileHandle handle) =>
        _writtenTo.GetOrAdd(segment, static (_, h) => LibC.Seek(h, 0, LibC.SEEK_HOLE) is var hole and >= 0 ? hole : long.MaxValue, handle);

    /// <summary>The zero-ahead's own fdatasync (a test replaces it to fail like a disk).</summary>
    internal Func<SafeFileHandle, int> ZeroAheadSync = LibC.DataSync;
    private readonly Lock _zeroSyncGate = new(); // held across the zero-ahead's fdatasync and the store of its error

    private volatile bool _zeroAheadOff;   // it failed once: the log goes on without it
    private int _zeroAheadSyncError;        // an fdatasync error it saw, for the next Sync to report

    private void ZeroAhead()
    {
        if (_zeroAheadOff) return;
        var tail = Volatile.Read(ref _zeroAheadTail);
        var segment = tail / SegmentSize;
        if (!_open.TryGetValue(segment, out var handle)) return;
        var target = Math.Min(SegmentSize, tail % SegmentSize + ZeroAheadBytes);
        try
        {
            var writtenTo = WrittenTo(segment, handle);
            if (writtenTo >= target) return;
            var wrote = false;
            while (true)
            {
                lock (_writeGate)
                {
                    // Past the furthest write, and past what the file holds written already (a recycled segment's earlier life).
                    var from = Math.Max(_writeSegment == segment ? _writeEnd : tail % SegmentSize, writtenTo);
                    if (_writeSegment > segment || from >= target) break; // the flusher moved on, or it is done
                    var length = (int)Math.Min(ZeroChunkBytes, target - from);
                    RandomAccess.Write(handle, ZeroChunk.Span[..length], from);
                    _writeSegment = segment;
                    _writeEnd = from + length;
                    wrote = true;
                }
            }
            if (!wrote) return;
            // Makes the zeroes' extents written ones now, in one journal commit, instead of in the next commit's.
            // It writes back the flusher's dirty pages of this file too, and Linux reports a write-back error
            // once per open file: an error here may be the only report of a lost log write, so the next Sync
            // fails with it (and the log is then untrusted) rather than a FLUSH being acknowledged.
            // Under _zeroSyncGate until its error is stored: a flusher's Sync that ends meanwhile waits for it, since its own
            // fdatasync returns 0 when this one took the file's error first.
            lock (_zeroSyncGate)
            {
                var errno = ZeroAheadSync(handle);
                if (errno != 0)
                {
                    Interlocked.CompareExchange(ref _zeroAheadSyncError, errno, 0);
                    _zeroAheadOff = true;
                }
            }
        }
        catch (ObjectDisposedException)
        {
            // The segment was released meanwhile (the destager): nothing ahead of it to get ready.
        }
        catch (Exception)
        {
            // Only an optimisation (a refused write): the log goes on without it, and a failing disk is
            // reported by the flusher's own writes and syncs.
            _zeroAheadOff = true;
        }
    }

    public void Sync()
    {
        var segments = _syncing;
        bool directory;
        lock (_gate)
        {
            segments.Clear();
            foreach (var segment in _unsynced) segments.Add(segment);
            _unsynced.Clear();
            directory = _directoryDirty;
            _directoryDirty = false;
        }
        for (var i = 0; i < segments.Count; i++)
        {
            if (!_open.TryGetValue(segments[i], out var handle)) continue;
            var errno = LibC.DataSync(handle);
            if (errno != 0)
            {
                // Whatever this Sync did not get to stays to be synced (the caller no longer trusts the log either way).
                lock (_gate)
                {
                    for (var j = i; j < segments.Count; j++) _unsynced.Add(segments[j]);
                    _directoryDirty |= directory;
                }
                BlockThrow.FromErrno(errno, "fdatasync", PathOf(segments[i]));
            }
        }
        if (directory) SyncDirectory();
        lock (_zeroSyncGate)
        {
            // A zero-ahead fdatasync still running finishes (and stores what it saw) before the error is read.
        }
        if (Volatile.Read(ref _zeroAheadSyncError) is var zeroAheadError and not 0)
            BlockThrow.FromErrno(zeroAheadError, "fdatasync (while zeroing ahead of the log's tail)", _directory);
    }

    public void SyncAll()
    {
        lock (_gate)
        {
            foreach (var segment in _open.Keys) _unsynced.Add(segment);
            _directoryDirty = true;
        }
        Sync();
    }

    private void SyncDirectory()
    {
        var errno = LibC.SyncDirectory(_directory);
        if (errno != 0) BlockThrow.FromErrno(errno, "fsync", _directory);
    }

    public bool TryReadWithoutWaiting(long address, Span<byte> destination)
    {
        var within = address % SegmentSize;
        if (within + destination.Length > SegmentSize || !_open.TryGetValue(address / SegmentSize, out var handle)) return false;
        try
        {
            return LibC.TryReadCached(handle, destination, within);
        }
        catch (ObjectDisposedException)
        {
            return false; // released meanwhile
        }
    }

    public bool TryRead(long address, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            var segment = address / SegmentSize;
            var within = address % SegmentSize;
            var n = (int)Math.Min(destination.Length, SegmentSize - within);
            var handle = Handle(segment, create: false);
            if (handle is null) return false;
            var part = destination[..n];
            try
            {
                var read = RandomAccess.Read(handle, part, within);
                part[read..].Clear();
            }
            catch (ObjectDisposedException)
            {
                return false; // released while we read
            }
            catch (IOException e)
            {
                BlockThrow.FromErrno(e.HResult is > 0 and < 4096 ? e.HResult : LibC.EIO, "log read", PathOf(segment));
            }
            destination = destination[n..];
            address += n;
        }
        return true;
    }

    public SafeFileHandle? SegmentHandle(long segment) => Handle(segment, create: false);

    public void Discard(long address, long length)
    {
        var handle = Handle(address / SegmentSize, create: false);
        if (handle is null || length <= 0) return;
        var errno = LibC.Allocate(handle, LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, address % SegmentSize, length);
        if (errno != 0)
        {
            // No hole punching: overwrite with zeroes instead.
            var zeroes = new byte[1 << 20];
            try
            {
                for (var done = 0L; done < length; done += zeroes.Length)
                    RandomAccess.Write(handle, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, length - done)), address % SegmentSize + done);
            }
            catch (IOException e)
            {
                BlockThrow.Error(BlockError.Io, $"cannot wipe {length} bytes of {PathOf(address / SegmentSize)}: {e.Message}", e);
            }
        }
        errno = LibC.DataSync(handle);
        if (errno != 0) throw LogSyncFailure.Of(errno, PathOf(address / SegmentSize));
    }

    public void Release(long segment)
    {
        lock (_gate)
        {
            if (_open.TryRemove(segment, out var handle)) handle.Dispose();
            _unsynced.Remove(segment);
            _fresh.Remove(segment);
            _writtenTo.TryRemove(segment, out _);
            var path = PathOf(segment);
            if (RoomForSpare && File.Exists(path) && new FileInfo(path).Length == SegmentSize)
            {
                var spare = Path.Combine(_directory, $"spare-{Guid.NewGuid():N}.log");
                File.Move(path, spare);
                _spares.Push(spare);
            }
            else File.Delete(path);
            _directoryDirty = true;
        }
    }

    public bool MayHoldStaleRecords(long segment)
    {
        lock (_gate) return !_fresh.Contains(segment);
    }

    /// <summary>Released segment files kept for reuse.</summary>
    public int SpareCount
    {
        get
        {
            lock (_gate) return _spares.Count;
        }
    }

    public void Dispose()
    {
        _zeroAhead.Dispose();
        foreach (var handle in _open.Values) handle.Dispose();
        _open.Clear();
    }
}

/// <summary>
/// The inner exception of a <see cref="BlockTargetException"/> from an fdatasync of the log: what it covered may be lost (Linux
/// reports a write-back error once and leaves the pages clean), so the log is not trusted after it, unlike after a failed write.
/// </summary>
public sealed class LogSyncFailure(string message) : Exception(message)
{
    public static BlockTargetException Of(int errno, string path) =>
        BlockThrow.ErrnoException(errno, "fdatasync", path, new LogSyncFailure($"fdatasync of {path} failed (errno {errno})"));
}
