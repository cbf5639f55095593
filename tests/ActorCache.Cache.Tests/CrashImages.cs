namespace ActorCache.Cache.Tests;

/// <summary>
/// What a power cut at a position of a <see cref="CrashJournal"/> leaves on disk. A file holds every
/// write completed before its last fdatasync ahead of the cut, and of its later writes what
/// <see cref="Unsynced"/> says: none, all, or any subset, each landed whole or torn after a 512-byte
/// sector. A rename or deletion holds once the directory is fsync'ed after it (before that, the names
/// are either the old ones or the new ones); a created file is taken to exist at once (the log's
/// first sync fsyncs the same directory, before anything is written into the store). Log segments are
/// rebuilt from their addresses in new files, as <see cref="RecordingMedium"/> does: the stale records a
/// recycled segment file would still hold are not reproduced.
/// </summary>
/// <remarks>
/// Positions are visited in increasing order: the journal is replayed once, with each file's durable
/// content and its writes since its last sync kept as it goes.
/// </remarks>
internal sealed class CrashImages(IReadOnlyList<CrashJournal.Op> ops, long segmentSize)
{
    public enum Unsynced { Lost, Landed, Some }

    private sealed class FileState
    {
        public Pages Durable = new();
        public readonly List<CrashJournal.Op> Pending = [];
    }

    private readonly Dictionary<string, FileState> _files = [];
    private Dictionary<string, string> _durableNames = [];
    private readonly Dictionary<string, string> _names = [];
    private int _position;

    private FileState File(string file)
    {
        if (!_files.TryGetValue(file, out var state)) _files[file] = state = new FileState();
        return state;
    }

    private void AdvanceTo(int position)
    {
        if (position < _position) throw new ArgumentException("crash images are built in journal order");
        for (; _position < position; _position++)
        {
            var op = ops[_position];
            switch (op.Kind)
            {
                case CrashJournal.Kind.Write or CrashJournal.Kind.Zero or CrashJournal.Kind.SetLength:
                    File(op.File).Pending.Add(op);
                    break;
                case CrashJournal.Kind.Sync:
                    var state = File(op.File);
                    foreach (var pending in state.Pending) state.Durable.Apply(pending, pending.Data?.Length ?? 0);
                    state.Pending.Clear();
                    break;
                case CrashJournal.Kind.Create:
                    _files[op.File] = new FileState();
                    _names[op.Name!] = op.File;
                    _durableNames[op.Name!] = op.File;
                    break;
                case CrashJournal.Kind.Rename:
                    _names.Remove(op.Name!);
                    _names[op.To!] = op.File;
                    break;
                case CrashJournal.Kind.Delete:
                    _names.Remove(op.Name!);
                    break;
                case CrashJournal.Kind.DirectorySync:
                    _durableNames = new Dictionary<string, string>(_names);
                    break;
                case CrashJournal.Kind.Release:
                    // The segment was past the checkpoint's horizon already (saved and synced before any release).
                    var log = File(CrashJournal.Log);
                    log.Durable.Drop(op.Offset * segmentSize, segmentSize);
                    log.Pending.RemoveAll(p => p.Offset / segmentSize == op.Offset);
                    break;
            }
        }
    }

    /// <summary>
    /// Writes into <paramref name="logDirectory"/> (segments, checkpoint, snapshot store) and
    /// <paramref name="backingPath"/> (<paramref name="backingSize"/> bytes) what a cut at
    /// <paramref name="position"/> leaves.
    /// </summary>
    public void Build(int position, Unsynced unsynced, Random random, string logDirectory, string backingPath, long backingSize)
    {
        AdvanceTo(position);
        Pages Content(string file)
        {
            if (!_files.TryGetValue(file, out var state)) return new Pages();
            var content = state.Durable.Clone();
            foreach (var pending in state.Pending)
            {
                var length = pending.Data?.Length ?? 0;
                switch (unsynced)
                {
                    case Unsynced.Lost:
                        continue;
                    case Unsynced.Landed:
                        content.Apply(pending, length);
                        continue;
                }
                switch (random.Next(5))
                {
                    case < 2:
                        break; // never reached the disk
                    case < 4:
                        content.Apply(pending, length);
                        break;
                    default:
                        // Torn: the first sectors of a write reached the disk.
                        content.Apply(pending, length == 0 ? 0 : random.Next(0, (length + 511) / 512) * 512);
                        break;
                }
            }
            return content;
        }

        Directory.CreateDirectory(logDirectory);
        using (var segments = new SegmentFiles(logDirectory, segmentSize))
        {
            foreach (var (segment, bytes) in Content(CrashJournal.Log).Segments(segmentSize))
                segments.Write(segment * segmentSize, [bytes]);
            segments.SyncAll();
        }
        var names = unsynced switch
        {
            Unsynced.Lost => _durableNames,
            Unsynced.Landed => _names,
            _ => random.Next(2) == 0 ? _durableNames : _names,
        };
        foreach (var (name, inode) in names) System.IO.File.WriteAllBytes(Path.Combine(logDirectory, name), Content(inode).ToArray());
        using var backing = System.IO.File.Create(backingPath);
        backing.Write(Content(CrashJournal.Backing).ToArray(backingSize));
        backing.SetLength(backingSize);
    }

    /// <summary>A file's bytes as 4 KiB pages (missing pages read as zeroes) and its length.</summary>
    private sealed class Pages
    {
        private const int PageSize = 4096;
        private readonly Dictionary<long, byte[]> _pages = [];
        private long _length;

        public Pages Clone()
        {
            var clone = new Pages { _length = _length };
            foreach (var (page, bytes) in _pages) clone._pages[page] = (byte[])bytes.Clone();
            return clone;
        }

        /// <summary>Applies a write (its first <paramref name="length"/> bytes), a zeroing or a length change.</summary>
        public void Apply(CrashJournal.Op op, int length)
        {
            switch (op.Kind)
            {
                case CrashJournal.Kind.Write:
                    Write(op.Offset, op.Data.AsSpan(0, length));
                    break;
                case CrashJournal.Kind.Zero:
                    Fill(op.Offset, op.Length);
                    break;
                case CrashJournal.Kind.SetLength:
                    Fill(op.Length, Math.Max(0, _length - op.Length));
                    _length = op.Length;
                    break;
            }
        }

        private void Write(long offset, ReadOnlySpan<byte> data)
        {
            _length = Math.Max(_length, offset + data.Length);
            while (!data.IsEmpty)
            {
                var page = offset / PageSize;
                var within = (int)(offset % PageSize);
                var n = Math.Min(data.Length, PageSize - within);
                if (!_pages.TryGetValue(page, out var bytes)) _pages[page] = bytes = new byte[PageSize];
                data[..n].CopyTo(bytes.AsSpan(within));
                data = data[n..];
                offset += n;
            }
        }

        private void Fill(long offset, long length)
        {
            for (var end = offset + length; offset < end;)
            {
                var page = offset / PageSize;
                var within = (int)(offset % PageSize);
                var n = (int)Math.Min(end - offset, PageSize - within);
                if (_pages.TryGetValue(page, out var bytes)) bytes.AsSpan(within, n).Clear();
                offset += n;
            }
        }

        /// <summary>Forgets a range (a deleted log segment).</summary>
        public void Drop(long offset, long length)
        {
            for (var page = offset / PageSize; page < (offset + length) / PageSize; page++) _pages.Remove(page);
        }

        public byte[] ToArray(long? length = null)
        {
            var bytes = new byte[length ?? _length];
            foreach (var (page, data) in _pages)
            {
                var at = page * PageSize;
                if (at >= bytes.Length) continue;
                data.AsSpan(0, (int)Math.Min(PageSize, bytes.Length - at)).CopyTo(bytes.AsSpan((int)at));
            }
            return bytes;
        }

        /// <summary>The log's segments that hold anything, each as one whole segment's bytes.</summary>
        public IEnumerable<(long Segment, byte[] Bytes)> Segments(long segmentSize)
        {
            foreach (var segment in _pages.Keys.Select(p => p * PageSize / segmentSize).Distinct().Order())
            {
                var bytes = new byte[segmentSize];
                for (var page = 0L; page < segmentSize / PageSize; page++)
                    if (_pages.TryGetValue(segment * segmentSize / PageSize + page, out var data)) data.CopyTo(bytes, page * PageSize);
                yield return (segment, bytes);
            }
        }
    }
}
