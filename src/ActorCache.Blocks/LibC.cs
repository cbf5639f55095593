using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ActorCache.Blocks;

/// <summary>The few Linux calls .NET does not expose: fdatasync, fallocate, SEEK_DATA/SEEK_HOLE, block device size.</summary>
public static partial class LibC
{
    public const int EPERM = 1, EIO = 5, EACCES = 13, EINVAL = 22, ENOSPC = 28, EROFS = 30, ENXIO = 6,
        EOPNOTSUPP = 95, EDQUOT = 122, EINTR = 4, EXDEV = 18, ENOSYS = 38, EBADF = 9;

    public const int FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02, FALLOC_FL_ZERO_RANGE = 0x10;
    public const int SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;
    public const int POSIX_FADV_WILLNEED = 3;
    private const ulong BLKGETSIZE64 = 0x80081272;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(SafeFileHandle fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long len);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(SafeFileHandle fd, ulong request, out ulong value);

    [LibraryImport("libc")]
    private static partial int posix_fadvise(SafeFileHandle fd, long offset, long len, int advice);

    [LibraryImport("libc")]
    private static partial IntPtr strerror(int errnum);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int fstatfs(SafeFileHandle fd, byte* buffer);

    public const long EXT4_SUPER_MAGIC = 0xEF53, TMPFS_MAGIC = 0x01021994;

    /// <summary>The file system type of an open file (statfs's f_type, e.g. <see cref="EXT4_SUPER_MAGIC"/>), or -1 when it cannot be told.</summary>
    public static unsafe long FileSystemType(SafeFileHandle fd)
    {
        var buffer = stackalloc byte[512]; // struct statfs is 120 bytes on 64-bit Linux; f_type comes first
        return fstatfs(fd, buffer) == 0 ? *(long*)buffer : -1;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint copy_file_range(SafeFileHandle fdIn, ref long offIn, SafeFileHandle fdOut, ref long offOut, nuint len, uint flags);

    /// <summary>
    /// Copies <paramref name="length"/> bytes between two files inside the kernel (copy_file_range: no
    /// user-space buffer, one call instead of a read and a write). Returns 0 or the errno; a source that
    /// copies nothing is EOPNOTSUPP. EXDEV, EINVAL, ENOSYS, EOPNOTSUPP or EBADF mean "not between these two files".
    /// </summary>
    public static int CopyRange(SafeFileHandle source, long sourceOffset, SafeFileHandle destination, long destinationOffset, long length)
    {
        while (length > 0)
        {
            var n = copy_file_range(source, ref sourceOffset, destination, ref destinationOffset, (nuint)length, 0);
            if (n > 0)
            {
                length -= n;
                continue;
            }
            if (n == 0) return EOPNOTSUPP; // the kernel copied nothing from a source that has the bytes: it cannot copy here
            var errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return errno;
        }
        return 0;
    }

    /// <summary>An errno of <see cref="CopyRange"/> that means the kernel cannot copy between these files (the caller reads and writes instead).</summary>
    public static bool CopyUnsupported(int errno) => errno is EXDEV or EINVAL or ENOSYS or EOPNOTSUPP or EBADF;

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint pwritev(SafeFileHandle fd, IoVector* iov, int iovcnt, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint preadv2(SafeFileHandle fd, IoVector* iov, int iovcnt, long offset, int flags);

    private const int RWF_NOWAIT = 0x08;

    /// <summary>
    /// Reads only if every byte is in the page cache right now (preadv2 with RWF_NOWAIT): true when the
    /// whole span was filled without waiting for the disk, false when the caller must read the slow way.
    /// </summary>
    public static unsafe bool TryReadCached(SafeFileHandle fd, Span<byte> destination, long offset)
    {
        fixed (byte* p = destination)
        {
            var vector = new IoVector { Base = p, Length = (nuint)destination.Length };
            var read = preadv2(fd, &vector, 1, offset, RWF_NOWAIT);
            return read == destination.Length; // EAGAIN, EOPNOTSUPP, short reads: not now
        }
    }

    /// <summary>One buffer of a gathered write (struct iovec).</summary>
    public unsafe struct IoVector
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary>pwritev of pinned buffers, repeated until everything is written; returns 0 or the errno.</summary>
    public static unsafe int WriteGathered(SafeFileHandle fd, Span<IoVector> vectors, long offset)
    {
        var first = 0;
        while (first < vectors.Length)
        {
            var count = Math.Min(vectors.Length - first, 1024); // IOV_MAX
            nint written;
            fixed (IoVector* v = &vectors[first]) written = pwritev(fd, v, count, offset);
            if (written < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR) continue;
                return errno;
            }
            offset += written;
            // Skip what was written; a short write leaves part of one vector for the next round.
            while (written > 0 && first < vectors.Length)
            {
                var length = (nint)vectors[first].Length;
                if (written >= length)
                {
                    written -= length;
                    first++;
                }
                else
                {
                    vectors[first].Base = (byte*)vectors[first].Base + written;
                    vectors[first].Length -= (nuint)written;
                    written = 0;
                }
            }
        }
        return 0;
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc")]
    private static partial int close(int fd);

    private const int O_RDONLY = 0, O_DIRECTORY = 0x10000;

    /// <summary>fsync of a directory, so a created, renamed or deleted entry in it is durable; returns 0 or the errno.</summary>
    /// <summary>
    /// Creates <paramref name="path"/> and any missing parents, fsyncing the parent of each one it creates: a directory
    /// made durable files are about to be written in must itself survive a power cut (POSIX does not promise it without).
    /// </summary>
    public static void CreateDirectoryDurably(string path)
    {
        path = Path.GetFullPath(path);
        if (Directory.Exists(path)) return;
        var parent = Path.GetDirectoryName(path);
        if (parent is not null) CreateDirectoryDurably(parent);
        Directory.CreateDirectory(path);
        if (parent is not null && SyncDirectory(parent) is var errno and not 0) BlockThrow.FromErrno(errno, "fsync", parent);
    }

    public static int SyncDirectory(string path)
    {
        var fd = open(path, O_RDONLY | O_DIRECTORY);
        if (fd < 0) return Marshal.GetLastPInvokeError();
        try
        {
            return fsync(fd) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        finally
        {
            close(fd);
        }
    }

    /// <summary>fdatasync; returns 0 or the errno.</summary>
    public static int DataSync(SafeFileHandle fd)
    {
        while (fdatasync(fd) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return errno;
        }
        return 0;
    }

    /// <summary>fallocate; returns 0 or the errno.</summary>
    public static int Allocate(SafeFileHandle fd, int mode, long offset, long length)
    {
        while (fallocate(fd, mode, offset, length) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) return errno;
        }
        return 0;
    }

    /// <summary>lseek; returns the new offset, or -errno.</summary>
    public static long Seek(SafeFileHandle fd, long offset, int whence)
    {
        var result = lseek(fd, offset, whence);
        return result >= 0 ? result : -Marshal.GetLastPInvokeError();
    }

    /// <summary>Size of a block device in bytes, or -errno.</summary>
    public static long BlockDeviceSize(SafeFileHandle fd) =>
        ioctl(fd, BLKGETSIZE64, out var size) == 0 ? (long)size : -Marshal.GetLastPInvokeError();

    public static void AdviseWillNeed(SafeFileHandle fd, long offset, long length) =>
        _ = posix_fadvise(fd, offset, length, POSIX_FADV_WILLNEED);

    public static string Describe(int errno) => Marshal.PtrToStringUTF8(strerror(errno)) ?? $"errno {errno}";
}
