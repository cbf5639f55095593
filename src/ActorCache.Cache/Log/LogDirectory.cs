using ActorCache.Blocks;
using Microsoft.Win32.SafeHandles;

namespace ActorCache.Cache;

/// <summary>
/// The files a volume keeps in its log directory beside the segments: the <see cref="Checkpoint"/> and the
/// snapshot store. Each is written in place at offsets and made durable by fdatasync, or written aside and
/// renamed over the old one, the rename made durable by an fsync of the directory. Like
/// <see cref="ILogMedium"/> under the log, this is where tests record every write and sync, to rebuild the
/// files as a power cut at any moment would have left them.
/// </summary>
public interface ILogDirectory
{
    /// <summary>Where the files are, for messages.</summary>
    string Path { get; }

    bool Exists(string name);

    /// <summary>Opens a file for reading and writing, as <paramref name="mode"/> says (<see cref="FileMode.Create"/> empties it).</summary>
    IDurableFile Open(string name, FileMode mode);

    /// <summary>Removes a file if it is there.</summary>
    void Delete(string name);

    /// <summary>Renames <paramref name="source"/> over <paramref name="destination"/> and fsyncs the directory: the replacement is durable when it returns.</summary>
    void Replace(string source, string destination);
}

/// <summary>One file of an <see cref="ILogDirectory"/>: positional reads and writes, readable from any thread, durable after <see cref="Sync"/>.</summary>
public interface IDurableFile : IDisposable
{
    string Path { get; }

    long Length { get; }

    /// <summary>Reads at <paramref name="offset"/>; returns the bytes read (fewer at the end of the file). Throws <see cref="ObjectDisposedException"/> once closed.</summary>
    int Read(Span<byte> destination, long offset);

    /// <summary>Writes at <paramref name="offset"/>; an <see cref="IOException"/> says why it could not.</summary>
    void Write(ReadOnlySpan<byte> data, long offset);

    void SetLength(long length);

    /// <summary>fdatasync: every write completed before it is durable when it returns.</summary>
    void Sync();
}

/// <summary>The real log directory: files on the local file system.</summary>
public sealed class LogDirectory(string path) : ILogDirectory
{
    public string Path => path;

    private string PathOf(string name) => System.IO.Path.Combine(path, name);

    public bool Exists(string name) => File.Exists(PathOf(name));

    public IDurableFile Open(string name, FileMode mode)
    {
        var file = PathOf(name);
        return new DurableFile(file, File.OpenHandle(file, mode, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete));
    }

    public void Delete(string name) => File.Delete(PathOf(name));

    public void Replace(string source, string destination)
    {
        File.Move(PathOf(source), PathOf(destination), overwrite: true);
        var errno = LibC.SyncDirectory(path);
        if (errno != 0) BlockThrow.FromErrno(errno, "fsync", path);
    }

    private sealed class DurableFile(string path, SafeFileHandle handle) : IDurableFile
    {
        public string Path => path;

        public long Length => RandomAccess.GetLength(handle);

        public int Read(Span<byte> destination, long offset) => RandomAccess.Read(handle, destination, offset);

        public void Write(ReadOnlySpan<byte> data, long offset) => RandomAccess.Write(handle, data, offset);

        public void SetLength(long length) => RandomAccess.SetLength(handle, length);

        public void Sync()
        {
            var errno = LibC.DataSync(handle);
            if (errno != 0) BlockThrow.FromErrno(errno, "fdatasync", path);
        }

        public void Dispose() => handle.Dispose();
    }
}
