namespace ActorCache.Cache.Tests;

/// <summary>
/// Every write and fdatasync a cache makes to its files (log segments, backing, snapshot store,
/// checkpoint), in the order they completed, like dm-log-writes under a whole machine. The journaled
/// layers (<see cref="JournaledMedium"/>, <see cref="JournaledBacking"/>, <see cref="JournaledDirectory"/>)
/// append to it; <see cref="CrashImages"/> replays it into what a power cut at any position leaves.
/// </summary>
/// <remarks>
/// Files are named by what they are: <see cref="Log"/> (one address space, synced as a whole: the
/// medium fdatasyncs every segment written since its last sync), <see cref="Backing"/>, and the log
/// directory's files by inode, so a write through a handle follows its file across a rename.
/// </remarks>
internal sealed class CrashJournal
{
    public const string Log = "log";
    public const string Backing = "backing";

    public enum Kind
    {
        Write,
        Zero, // a trim or write-zeroes of Length bytes
        SetLength,
        Sync, // fdatasync of File
        Create, // Name now names the new, empty File
        Rename, // Name's file now has the name To
        Delete,
        DirectorySync, // the log directory's names are durable
        Release, // the log no longer has segment Offset
    }

    public sealed record Op(Kind Kind, string File, long Offset = 0, byte[]? Data = null, long Length = 0, string? Name = null, string? To = null);

    private readonly List<Op> _ops = [];
    private readonly Dictionary<string, string> _names = []; // the log directory's file names as the process sees them, to inodes
    private int _inodes;

    /// <summary>The number of operations recorded so far: a power cut "at" a position keeps those before it.</summary>
    public int Position
    {
        get
        {
            lock (_ops) return _ops.Count;
        }
    }

    public IReadOnlyList<Op> Snapshot()
    {
        lock (_ops) return [.. _ops];
    }

    private void Add(Op op)
    {
        lock (_ops) _ops.Add(op);
    }

    public void Write(string file, long offset, byte[] data) => Add(new Op(Kind.Write, file, offset, data));
    public void Zero(string file, long offset, long length) => Add(new Op(Kind.Zero, file, offset, Length: length));
    public void SetLength(string file, long length) => Add(new Op(Kind.SetLength, file, Length: length));
    public void Sync(string file) => Add(new Op(Kind.Sync, file));
    public void Release(long segment) => Add(new Op(Kind.Release, Log, segment));

    /// <summary>A file of the log directory was opened: the inode it is (a new one when it was created), emptied when <paramref name="mode"/> says so.</summary>
    public string Open(string name, FileMode mode)
    {
        lock (_ops)
        {
            if (_names.TryGetValue(name, out var inode))
            {
                if (mode is FileMode.Create or FileMode.Truncate) _ops.Add(new Op(Kind.SetLength, inode));
                return inode;
            }
            inode = $"inode-{++_inodes}";
            _names[name] = inode;
            _ops.Add(new Op(Kind.Create, inode, Name: name));
            return inode;
        }
    }

    public void Delete(string name)
    {
        lock (_ops)
        {
            if (!_names.Remove(name, out var inode)) return;
            _ops.Add(new Op(Kind.Delete, inode, Name: name));
        }
    }

    /// <summary>A rename and the directory fsync after it: two operations, so a cut can fall between them.</summary>
    public void Replace(string source, string destination)
    {
        lock (_ops)
        {
            var inode = _names[source];
            _names.Remove(source);
            _names[destination] = inode;
            _ops.Add(new Op(Kind.Rename, inode, Name: source, To: destination));
            _ops.Add(new Op(Kind.DirectorySync, ""));
        }
    }
}
