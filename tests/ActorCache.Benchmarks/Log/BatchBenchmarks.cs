using ActorCache.Blocks;
using ActorCache.Cache;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Log;

/// <summary>
/// Encoding and decoding a full batch header, and the CRC32C of a 4 KiB block and of a 1 MiB batch of data, with the
/// one-chain loop <see cref="Crc32C"/> used before it ran three chains as the baseline.
/// </summary>
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

    [Benchmark]
    public uint Crc32COfOneMiBOneChain() => ~OneChain(0xFFFFFFFFu, _data);

    [Benchmark]
    public uint Crc32COfOneBlock() => Crc32C.Compute(_data.AsSpan(0, LogFormat.BlockSize));

    [Benchmark]
    public uint Crc32COfOneBlockOneChain() => ~OneChain(0xFFFFFFFFu, _data.AsSpan(0, LogFormat.BlockSize));

    /// <summary>The CRC as it was computed before: one chain of CRC instructions, each waiting for the last.</summary>
    private static uint OneChain(uint crc, ReadOnlySpan<byte> data)
    {
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(data);
        foreach (var word in words) crc = System.Numerics.BitOperations.Crc32C(crc, word);
        foreach (var b in data[(words.Length * 8)..]) crc = System.Numerics.BitOperations.Crc32C(crc, b);
        return crc;
    }
}
