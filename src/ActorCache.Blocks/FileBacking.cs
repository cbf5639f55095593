using Microsoft.Win32.SafeHandles;

namespace ActorCache.Blocks;

/// <summary>
/// The bottom of every stack: a sparse file or a block device, read and written with pread/pwrite.
/// FLUSH and FUA are fdatasync; TRIM punches holes; allocation comes from SEEK_DATA/SEEK_HOLE.
/// </summary>
public sealed class FileBacking : IBlockTarget, IFileRangeCopy
{
    private const int ZeroChunk = 1 << 20;
    private static readonly byte[] Zeroes = GC.AllocateArray<byte>(ZeroChunk, pinned: true);

    private readonly SafeFileHandle _handle;
    private readonly bool _isBlockDevice;
    private long _size;

    private FileBacking(string path, SafeFileHandle handle, long size, bool isBlockDevice, bool readOnly)
    {
        Path = path;
        _handle = handle;
        _size = size;
        _isBlockDevice = isBlockDevice;
        Capabilities = isBlockDevice
            ? TargetCapabilities.None
            : TargetCapabilities.Trim | TargetCapabilities.FastZero | TargetCapabilities.Allocation;
        if (readOnly) Capabilities |= TargetCapabilities.ReadOnly;
    }

    public string Path { get; }

    /// <summary>The volume's size (a block device may be larger); grows with <see cref="GrowTarget"/>.</summary>
    public long Size => Volatile.Read(ref _size);

    public TargetCapabilities Capabilities { get; }

    /// <summary>
    /// Opens (or with <paramref name="create"/>, creates as a sparse file) the backing at <paramref name="path"/>.
    /// A regular file shorter than <paramref name="size"/> is extended sparsely, unless <paramref name="extend"/>
    /// is false (the backing of a volume that already holds data: a short file there means it was replaced);
    /// a block device must be at least that large.
    /// </summary>
    public static FileBacking Open(string path, long size, bool create, bool readOnly = false, bool extend = true)
    {
        if (size <= 0) BlockThrow.Error(BlockError.InvalidRequest, $"backing size must be positive, got {size}");
        if (Directory.Exists(path)) BlockThrow.Error(BlockError.InvalidRequest, $"backing {path} is a directory; give a file or a block device");
        var exists = File.Exists(path);
        if (!exists && !create)
            BlockThrow.Error(BlockError.InvalidRequest, $"backing {path} does not exist; create it or let the node create a sparse file");
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, exists ? FileMode.Open : FileMode.CreateNew,
                readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BlockTargetException(BlockError.Io, $"cannot open backing {path}: {e.Message}", e);
        }

        try
        {
            var deviceSize = LibC.BlockDeviceSize(handle);
            if (deviceSize >= 0)
            {
                if (deviceSize < size)
                    BlockThrow.Error(BlockError.NoSpace, $"block device {path} holds {deviceSize} bytes, less than the volume's {size}");
                return new FileBacking(path, handle, size, isBlockDevice: true, readOnly);
            }
            var length = RandomAccess.GetLength(handle);
            if (length < size)
            {
                if (!extend)
                    BlockThrow.Error(BlockError.InvalidRequest,
                        $"backing {path} is {length} bytes, shorter than the volume's {size}: it is not the file the volume was written to " +
                        "(replaced or truncated?); put the right file back and restart the node");
                if (readOnly) BlockThrow.Error(BlockError.ReadOnly, $"read-only backing {path} is {length} bytes, smaller than {size}");
                RandomAccess.SetLength(handle, size); // sparse: no blocks allocated
            }
            return new FileBacking(path, handle, size, isBlockDevice: false, readOnly);
        }
        catch (ArgumentException e)
        {
            // SetLength past the file system's largest file (ext4: 16 TiB).
            handle.Dispose();
            if (!exists) TryDelete(path);
            throw new BlockTargetException(BlockError.NoSpace, $"cannot prepare backing {path}: the file system cannot hold a file of {size} bytes", e);
        }
        catch (Exception e) when (e is not BlockTargetException)
        {
            handle.Dispose();
            if (!exists) TryDelete(path);
            throw new BlockTargetException(BlockError.Io, $"cannot prepare backing {path}: {e.Message}", e);
        }
        catch
        {
            handle.Dispose();
            if (!exists) TryDelete(path);
            throw;
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var span = destination.Span;
        try
        {
            while (!span.IsEmpty)
            {
                var n = RandomAccess.Read(_handle, span, offset);
                if (n == 0) { span.Clear(); break; } // past the end of a file shorter than the volume
                span = span[n..];
                offset += n;
            }
        }
        catch (IOException e) when (e is not BlockTargetException)
        {
            BlockThrow.FromErrno(ErrnoOf(e), "read", Path);
        }
        return ValueTask.CompletedTask;
    }

    public bool TryReadWithoutWaiting(long offset, Span<byte> destination) => LibC.TryReadCached(_handle, destination, offset);

    private volatile bool _copyUnsupported;
    private bool? _copiesBytes;

    /// <summary>
    /// Only where copy_file_range really copies: on XFS or btrfs it would share the log segment's extents
    /// with the backing (reflink), and a recycled segment's next writes would then be copy-on-write
    /// allocations again, with a journal commit in every fdatasync and no space reserved for them.
    /// </summary>
    private bool CopiesBytes => _copiesBytes ??= !_isBlockDevice && LibC.FileSystemType(_handle) is LibC.EXT4_SUPER_MAGIC or LibC.TMPFS_MAGIC;

    public bool SerializesWrites => !_isBlockDevice;

    public bool TryCopyFrom(SafeFileHandle source, long sourceOffset, long offset, long length)
    {
        if (_copyUnsupported || !CopiesBytes) return false;
        var errno = LibC.CopyRange(source, sourceOffset, _handle, offset, length);
        if (errno == 0) return true;
        // Not between these file systems: writes go the ordinary way from now on. Any other error is left to
        // the ordinary read and write of this run, so the failing side (log or backing) reports itself.
        if (LibC.CopyUnsupported(errno)) _copyUnsupported = true;
        return false;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        try
        {
            RandomAccess.Write(_handle, data.Span, offset);
        }
        catch (UnauthorizedAccessException)
        {
            BlockThrow.Error(BlockError.ReadOnly, $"backing {Path} is open read-only");
        }
        catch (IOException e) when (e is not BlockTargetException)
        {
            BlockThrow.FromErrno(ErrnoOf(e), "write", Path);
        }
        if (fua) SyncOrThrow();
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        SyncOrThrow();
        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) =>
        // Trimmed blocks read back as zeroes, so later layers (and tests) see one deterministic result.
        WriteZeroesAsync(offset, length, mayDeallocate: true, fastOnly: false, fua, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        if (!_isBlockDevice)
        {
            var mode = mayDeallocate
                ? LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE
                : LibC.FALLOC_FL_ZERO_RANGE | LibC.FALLOC_FL_KEEP_SIZE;
            var errno = LibC.Allocate(_handle, mode, offset, length);
            if (errno == 0)
            {
                if (fua) SyncOrThrow();
                return ValueTask.CompletedTask;
            }
            if (errno != LibC.EOPNOTSUPP && errno != LibC.EINVAL) BlockThrow.FromErrno(errno, "fallocate", Path);
        }
        if (fastOnly) BlockThrow.Error(BlockError.NotSupported, $"{Path} cannot zero a range without writing it");
        while (length > 0)
        {
            var n = (int)Math.Min(length, ZeroChunk);
            WriteAsync(offset, Zeroes.AsMemory(0, n), fua: false, cancellationToken);
            offset += n;
            length -= n;
        }
        if (fua) SyncOrThrow();
        return ValueTask.CompletedTask;
    }

    public ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents,
        CancellationToken cancellationToken = default)
    {
        var span = extents.Span;
        if (span.IsEmpty) return ValueTask.FromResult(0);
        var end = Math.Min(offset + length, Size);
        if (_isBlockDevice)
        {
            span[0] = new AllocationExtent(end - offset, AllocationState.Data);
            return ValueTask.FromResult(1);
        }
        var count = 0;
        while (offset < end && count < span.Length)
        {
            var data = LibC.Seek(_handle, offset, LibC.SEEK_DATA);
            long next;
            AllocationState state;
            if (data == -LibC.ENXIO || data >= end)
            {
                next = end; // nothing but hole up to the end of the range
                state = AllocationState.Hole | AllocationState.Zero;
            }
            else if (data < 0)
            {
                next = end; // file system without SEEK_DATA: report data, which is always safe
                state = AllocationState.Data;
            }
            else if (data > offset)
            {
                next = data;
                state = AllocationState.Hole | AllocationState.Zero;
            }
            else
            {
                var hole = LibC.Seek(_handle, offset, LibC.SEEK_HOLE);
                next = hole < 0 ? end : Math.Min(hole, end);
                state = AllocationState.Data;
            }
            if (next <= offset) next = end; // never loop without progress
            if (count > 0 && span[count - 1].State == state)
                span[count - 1] = span[count - 1] with { Length = span[count - 1].Length + (next - offset) };
            else
                span[count++] = new AllocationExtent(next - offset, state);
            offset = next;
        }
        return ValueTask.FromResult(count);
    }

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        LibC.AdviseWillNeed(_handle, offset, length);
        return ValueTask.CompletedTask;
    }

    /// <summary>Handles <see cref="GrowTarget"/>; nothing else is meant for the backing.</summary>
    public ValueTask<bool> TrySendAsync(TargetMessage message, CancellationToken cancellationToken = default)
    {
        if (message is not GrowTarget grow) return ValueTask.FromResult(false);
        Grow(grow.NewSize);
        return ValueTask.FromResult(true);
    }

    /// <summary>
    /// Extends a file sparsely to <paramref name="size"/> and fdatasyncs it, so the length is durable
    /// before the caller records the new size (a restart refuses a backing shorter than its volume). A
    /// block device cannot grow: it serves a larger volume only if it is that large already.
    /// </summary>
    private void Grow(long size)
    {
        var current = Size;
        if (size < current) BlockThrow.Error(BlockError.InvalidRequest, $"backing {Path} cannot shrink from {current} to {size} bytes");
        if ((Capabilities & TargetCapabilities.ReadOnly) != 0) BlockThrow.Error(BlockError.ReadOnly, $"backing {Path} is open read-only and cannot grow");
        if (_isBlockDevice)
        {
            var deviceSize = LibC.BlockDeviceSize(_handle);
            if (deviceSize < size)
                BlockThrow.Error(BlockError.NoSpace,
                    $"block device {Path} holds {deviceSize} bytes, less than {size}; a block device backing cannot grow (enlarge the device first)");
        }
        else if (RandomAccess.GetLength(_handle) < size)
        {
            try
            {
                RandomAccess.SetLength(_handle, size); // sparse: no blocks allocated
            }
            catch (Exception e) when (e is IOException or ArgumentException)
            {
                throw new BlockTargetException(BlockError.NoSpace, $"cannot extend backing {Path} to {size} bytes: {e.Message}", e);
            }
            SyncOrThrow();
        }
        Volatile.Write(ref _size, size);
    }

    /// <summary>
    /// fdatasyncs and closes: a write acknowledged without FUA (pass-through) is in the page cache until
    /// then. A sync that fails is reported; how many bytes it would have saved is not known here.
    /// </summary>
    public ValueTask<CloseReport> CloseAsync()
    {
        var report = CloseReport.Durable;
        if ((Capabilities & TargetCapabilities.ReadOnly) == 0)
        {
            try
            {
                SyncOrThrow();
            }
            catch (BlockTargetException e)
            {
                report = new CloseReport(CloseReport.UnknownBytes, $"the final flush failed: {e.Message}");
            }
        }
        _handle.Dispose();
        return ValueTask.FromResult(report);
    }

    public ValueTask DisposeAsync()
    {
        _handle.Dispose();
        return ValueTask.CompletedTask;
    }

    private void SyncOrThrow()
    {
        var errno = LibC.DataSync(_handle);
        if (errno != 0) BlockThrow.FromErrno(errno, "fdatasync", Path);
    }

    // .NET on Unix puts the raw errno into HResult for I/O errors it does not map to a narrower type.
    private static int ErrnoOf(IOException e) => e.HResult is > 0 and < 4096 ? e.HResult : LibC.EIO;

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
