using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>Under the log: passes everything to the real medium and records each completed write and sync in the journal.</summary>
internal sealed class JournaledMedium(ILogMedium inner, CrashJournal journal) : ILogMedium
{
    public long SegmentSize => inner.SegmentSize;
    public IReadOnlyList<long> Segments => inner.Segments;
    public int SpareCount => inner.SpareCount;

    public void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
    {
        inner.Write(address, buffers);
        var data = new byte[buffers.Sum(b => b.Length)];
        var at = 0;
        foreach (var buffer in buffers)
        {
            buffer.Span.CopyTo(data.AsSpan(at));
            at += buffer.Length;
        }
        journal.Write(CrashJournal.Log, address, data);
    }

    public void PrepareAhead(long tail) => inner.PrepareAhead(tail); // its zeroes go past the tail, where no record is

    public void Sync()
    {
        inner.Sync();
        journal.Sync(CrashJournal.Log);
    }

    public void SyncAll()
    {
        inner.SyncAll();
        journal.Sync(CrashJournal.Log);
    }

    public void Discard(long address, long length)
    {
        inner.Discard(address, length);
        journal.Zero(CrashJournal.Log, address, length);
        // Discard fdatasyncs the one segment; the journal syncs the whole log (it is used after a failed write and by recovery, not in a journaled run).
        journal.Sync(CrashJournal.Log);
    }

    public void Release(long segment)
    {
        inner.Release(segment);
        journal.Release(segment);
    }

    public bool TryRead(long address, Span<byte> destination) => inner.TryRead(address, destination);
    public bool TryReadWithoutWaiting(long address, Span<byte> destination) => inner.TryReadWithoutWaiting(address, destination);
    public bool MayHoldStaleRecords(long segment) => inner.MayHoldStaleRecords(segment);
    public void Dispose() => inner.Dispose();
}

/// <summary>Over the backing: records each completed write, trim and zeroing (as zeroes: a file backing reads them back so) and each FLUSH or FUA.</summary>
internal sealed class JournaledBacking(IBlockTarget below, CrashJournal journal) : ForwardingTarget(below)
{
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        await Below.WriteAsync(offset, data, fua, cancellationToken);
        journal.Write(CrashJournal.Backing, offset, data.ToArray());
        if (fua) journal.Sync(CrashJournal.Backing);
    }

    public override async ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        await Below.TrimAsync(offset, length, fua, cancellationToken);
        journal.Zero(CrashJournal.Backing, offset, length);
        if (fua) journal.Sync(CrashJournal.Backing);
    }

    public override async ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        await Below.WriteZeroesAsync(offset, length, mayDeallocate, fastOnly, fua, cancellationToken);
        journal.Zero(CrashJournal.Backing, offset, length);
        if (fua) journal.Sync(CrashJournal.Backing);
    }

    public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        await Below.FlushAsync(cancellationToken);
        journal.Sync(CrashJournal.Backing);
    }

    // Every write goes through the recorded calls above.
    public override ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(false);
}

/// <summary>Over the log directory (checkpoint, snapshot store): records every write, length change and fdatasync by inode, and every rename.</summary>
internal sealed class JournaledDirectory(ILogDirectory inner, CrashJournal journal) : ILogDirectory
{
    public string Path => inner.Path;

    public bool Exists(string name) => inner.Exists(name);

    public IDurableFile Open(string name, FileMode mode)
    {
        var file = inner.Open(name, mode);
        return new JournaledFile(file, journal.Open(name, mode), journal);
    }

    public void Delete(string name)
    {
        inner.Delete(name);
        journal.Delete(name);
    }

    public void Replace(string source, string destination)
    {
        inner.Replace(source, destination);
        journal.Replace(source, destination);
    }

    private sealed class JournaledFile(IDurableFile inner, string inode, CrashJournal journal) : IDurableFile
    {
        public string Path => inner.Path;
        public long Length => inner.Length;
        public int Read(Span<byte> destination, long offset) => inner.Read(destination, offset);

        public void Write(ReadOnlySpan<byte> data, long offset)
        {
            inner.Write(data, offset);
            journal.Write(inode, offset, data.ToArray());
        }

        public void SetLength(long length)
        {
            inner.SetLength(length);
            journal.SetLength(inode, length);
        }

        public void Sync()
        {
            inner.Sync();
            journal.Sync(inode);
        }

        public void Dispose() => inner.Dispose();
    }
}
