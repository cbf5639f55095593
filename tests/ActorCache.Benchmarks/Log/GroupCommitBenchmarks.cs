using ActorCache.Blocks;
using ActorCache.Cache;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Log;

/// <summary>
/// Log append with group commit: a batch of N 4 KiB writes (header block + data, checksummed, one
/// gathered pwritev) made durable by one fdatasync. Writes=1 is a FLUSH after every write with no one
/// to share it; Writes=32 is what the flusher does when 32 FLUSH/FUA requests wait at once. Divide by
/// Writes for the cost per write. Runs on a real segment file under /tmp.
/// </summary>
[MemoryDiagnoser]
public class GroupCommitBenchmarks
{
    private const long SegmentSize = 64 << 20;

    private readonly byte[] _header = GC.AllocateArray<byte>(LogFormat.BlockSize, pinned: true);
    private readonly byte[] _data = GC.AllocateArray<byte>(32 * LogFormat.BlockSize, pinned: true);
    private readonly LogEntry[] _entries = new LogEntry[LogFormat.MaxEntries];
    private readonly List<ReadOnlyMemory<byte>> _gather = new(64);
    private readonly Guid _volume = Guid.NewGuid();
    private string _directory = "";
    private SegmentFiles _log = null!;
    private long _address, _sequence;

    [Params(1, 32)]
    public int Writes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("actorcache-groupcommit-").FullName;
        _log = new SegmentFiles(_directory, SegmentSize);
        new Random(1).NextBytes(_data);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _log.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark]
    public void AppendBatchAndSync()
    {
        var size = (1L + Writes) * LogFormat.BlockSize;
        if (_address % SegmentSize + size > SegmentSize) _address = 0; // wrap within the one segment: the file stays written
        _gather.Clear();
        _gather.Add(_header);
        for (var i = 0; i < Writes; i++)
        {
            var block = _data.AsMemory(i * LogFormat.BlockSize, LogFormat.BlockSize);
            _entries[i] = new LogEntry(i * 7, 1, LogEntryType.Data, Crc32C.Compute(block.Span));
            _gather.Add(block);
        }
        var header = new BatchHeader(++_sequence, 1, 1_700_000_000_000_000, LogFormat.SyncPointFlag, _volume, Writes, _sequence - 1, Writes);
        LogFormat.WriteHeader(_header, header, _entries.AsSpan(0, Writes));
        _log.Write(_address, _gather);
        _log.Sync();
        _address += size;
    }
}
