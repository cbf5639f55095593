using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ActorCache.Hosting;

/// <summary>
/// The Linux calls the node itself needs where .NET hides the errno: open + flock for the data
/// directory lock (so "read-only file system" is not mistaken for "locked"), and statvfs for free space.
/// </summary>
internal static partial class NodeLibC
{
    public const int EWOULDBLOCK = 11, EACCES = 13, EROFS = 30, ENOENT = 2, EISDIR = 21, ENOSPC = 28;

    private const int O_RDWR = 2, O_CREAT = 0x40, O_CLOEXEC = 0x80000;
    private const int LOCK_EX = 2, LOCK_NB = 4;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, int mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(SafeFileHandle fd, int operation);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup(nint fd);

    [LibraryImport("libc")]
    private static partial int close(int fd);

    /// <summary>A second descriptor for the same open socket or file, or -1.</summary>
    public static int Duplicate(nint fd) => dup(fd);

    public static void Close(int fd) => _ = close(fd);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statvfs(string path, out StatVfs buffer);

    [StructLayout(LayoutKind.Sequential)]
    private struct StatVfs // glibc, 64-bit
    {
        public ulong BlockSize, FragmentSize, Blocks, BlocksFree, BlocksAvailable, Files, FilesFree, FilesAvailable, FsId, Flags, NameMax;
        private unsafe fixed int _spare[6];
    }

    /// <summary>Opens (creating if needed) a file for reading and writing; the handle, or the errno.</summary>
    public static (SafeFileHandle? Handle, int Errno) OpenOrCreate(string path)
    {
        var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, Convert.ToInt32("644", 8));
        return fd < 0 ? (null, Marshal.GetLastPInvokeError()) : (new SafeFileHandle(fd, ownsHandle: true), 0);
    }

    /// <summary>flock(LOCK_EX | LOCK_NB); 0 or the errno (EWOULDBLOCK: another process holds it).</summary>
    public static int TryLockExclusive(SafeFileHandle handle) => flock(handle, LOCK_EX | LOCK_NB) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Bytes an unprivileged writer may still allocate on the file system holding <paramref name="path"/>, or -errno.</summary>
    public static long AvailableBytes(string path) =>
        statvfs(path, out var s) == 0 ? (long)(s.BlocksAvailable * s.FragmentSize) : -Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => ActorCache.Blocks.LibC.Describe(errno);
}
