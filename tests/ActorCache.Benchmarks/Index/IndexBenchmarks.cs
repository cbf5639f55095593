using ActorCache.Cache;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Index;

/// <summary>Index updates (made by an extent actor, one writer per extent) and lookups (the lock-free read path).</summary>
[MemoryDiagnoser]
public class IndexBenchmarks
{
    private const long Blocks = 262144; // 1 GiB
    private readonly BlockIndex _index = new(Blocks);
    private long _next;

    [GlobalSetup]
    public void Setup()
    {
        for (long b = 0; b < Blocks; b++) _index.Set(b, BlockIndex.Encode(BlockLocation.Log, b));
    }

    [Benchmark]
    public void SetAndGet()
    {
        var block = (_next = (_next + 7919) % Blocks);
        _index.Set(block, BlockIndex.Encode(BlockLocation.Ring, block & 1023));
        _index.Get((block * 31) % Blocks);
    }

    [Benchmark]
    public bool ReplaceRingWithLog()
    {
        var block = (_next = (_next + 104729) % Blocks);
        _index.Set(block, BlockIndex.Encode(BlockLocation.Ring, 5));
        return _index.Replace(block, BlockIndex.Encode(BlockLocation.Ring, 5), BlockIndex.Encode(BlockLocation.Log, block));
    }
}
