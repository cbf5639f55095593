using ActorCache.Blocks;
using ActorCache.Cache;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Log;

/// <summary>Encoding and decoding a full batch header, and the CRC32C of a 1 MiB batch of data.</summary>
[MemoryDiagnoser]
public class BatchBenchmarks
{
    private readonly byte[] _header = new byte[LogFormat.BlockSize];
    private readonly LogEntry[] _entries = new LogEntry[LogFormat.MaxEntries];
    private readonly LogEntry[] _decoded = new LogEntry[LogFormat.MaxEntries];
    private readonly byte[] _data = new byte[1 << 20];
    private readonly Guid _volume = Guid.NewGuid();

    [GlobalSetup]
    public void Setup()
    {
        for (var i = 0; i < _entries.Length; i++) _entries[i] = new LogEntry(i * 3, 1, LogEntryType.Data, (uint)i);
        new Random(1).NextBytes(_data);
    }

    [Benchmark]
    public bool EncodeAndDecodeHeader()
    {
        var header = new BatchHeader(42, 7, 1_700_000_000_000_000, 0, _volume, _entries.Length, 41, _entries.Length);
        LogFormat.WriteHeader(_header, header, _entries);
        return LogFormat.TryReadHeader(_header, _volume, out _, _decoded);
    }

    [Benchmark]
    public uint Crc32COfOneMiB() => Crc32C.Compute(_data);
}
