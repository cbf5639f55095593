namespace ActorCache.Cache;

/// <summary>
/// Walks the log batch by batch, in log order, and says what each batch does to the index: the one
/// place that turns a batch into index entries. Recovery, the destager, views of older generations and
/// replication catch-up all read history through it.
/// </summary>
/// <remarks>Not thread-safe: one walker per walk. It reads headers only; whoever needs the data reads it at <see cref="DataAddress"/>.</remarks>
public sealed class LogWalker
{
    private readonly LogReader _reader;
    private readonly ILogMedium _medium;

    public LogWalker(ILogMedium medium, Guid volumeId)
    {
        _medium = medium;
        _reader = new LogReader(medium, volumeId);
    }

    /// <summary>Where the current batch's header is (after <see cref="TryRead"/>), or where the next is looked for.</summary>
    public long Address { get; private set; }

    /// <summary>The sequence number of the current batch, or of the one looked for next.</summary>
    public long Sequence { get; private set; }

    /// <summary>The header of the current batch (valid after <see cref="TryRead"/> returned true).</summary>
    public BatchHeader Header { get; private set; }

    public ReadOnlySpan<LogEntry> Entries => _reader.Entries.AsSpan(0, Header.EntryCount);

    /// <summary>Byte address of the current batch's first data block.</summary>
    public long DataAddress => LogReader.DataAddress(Address);

    /// <summary>The generation of the batches after the current one: a sync point closes its generation.</summary>
    public long GenerationAfter => Header.IsSyncPoint ? Header.Generation + 1 : Header.Generation;

    /// <summary>Where the next batch starts once the current one is passed.</summary>
    public long EndAddress => Address + Header.SizeBytes;

    /// <summary>Positions the walker at batch <paramref name="sequence"/>, expected at <paramref name="address"/>.</summary>
    public void Seek(long address, long sequence)
    {
        Address = address;
        Sequence = sequence;
        Header = default;
    }

    /// <summary>
    /// Reads the header of the batch expected next (at the address, or at the next segment start if it
    /// did not fit there); false when there is none (the end of the log, or damage: the caller decides).
    /// </summary>
    public bool TryRead()
    {
        var address = Address;
        if (!_reader.TryFind(ref address, Sequence, out var header)) return false;
        Address = address;
        Header = header;
        return true;
    }

    /// <summary>
    /// Reads the batch expected next at the next segment start only: where it went when a first attempt at
    /// the current address failed and left a header there (recovery checks it when that one's data is bad).
    /// </summary>
    public bool TryReadAtNextSegment()
    {
        if (Address % _medium.SegmentSize == 0) return false;
        var next = (Address / _medium.SegmentSize + 1) * _medium.SegmentSize;
        if (!_reader.TryReadAt(next, out var header) || header.Sequence != Sequence) return false;
        Address = next;
        Header = header;
        return true;
    }

    /// <summary>Moves past the current batch.</summary>
    public void Advance()
    {
        Address = EndAddress;
        Sequence++;
    }

    /// <summary>Reads the current batch's data blocks (all of them, in entry order); false when a segment is gone.</summary>
    public bool TryReadData(Span<byte> destination) =>
        _medium.TryRead(DataAddress, destination[..(Header.DataBlocks << LogFormat.BlockShift)]);

    /// <summary>Every block the current batch changes, with the index entry it gets, in entry order.</summary>
    public BlockEnumerator Blocks() => new(Entries, DataAddress >> LogFormat.BlockShift, Address >> LogFormat.BlockShift);

    /// <summary>The low-level reader (header probes past damage during recovery).</summary>
    internal LogReader Reader => _reader;

    /// <summary>
    /// The blocks of one batch: a data block points at its copy in the log, a trimmed or zeroed block
    /// at the batch header (a logged zero). A struct, so walking allocates nothing.
    /// </summary>
    public ref struct BlockEnumerator
    {
        private readonly ReadOnlySpan<LogEntry> _entries;
        private readonly long _headerBlock;
        private long _dataBlock;
        private int _entry, _within;

        internal BlockEnumerator(ReadOnlySpan<LogEntry> entries, long dataBlock, long headerBlock)
        {
            _entries = entries;
            _dataBlock = dataBlock;
            _headerBlock = headerBlock;
            _entry = 0;
            _within = -1;
            Current = default;
        }

        public WalkedBlock Current { get; private set; }

        public readonly BlockEnumerator GetEnumerator() => this;

        public bool MoveNext()
        {
            while (_entry < _entries.Length)
            {
                var entry = _entries[_entry];
                if (++_within < entry.BlockCount)
                {
                    var block = entry.Block + _within;
                    Current = entry.Type == LogEntryType.Data
                        ? new WalkedBlock(block, BlockIndex.Encode(BlockLocation.Log, _dataBlock++), entry.Type)
                        : new WalkedBlock(block, BlockIndex.Encode(BlockLocation.Zero, _headerBlock), entry.Type);
                    return true;
                }
                _entry++;
                _within = -1;
            }
            return false;
        }
    }
}

/// <summary>One block a batch changes: its number, its new index entry, and how (data, trim or zero).</summary>
public readonly record struct WalkedBlock(long Block, ulong Entry, LogEntryType Type);
