using ActorCache.Cache;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Ring;

/// <summary>Claiming and releasing ring slots: the first and last thing every cached write does.</summary>
[MemoryDiagnoser]
public class RingSlotBenchmarks
{
    private readonly RingBuffer _ring = new(64L << 20);
    private readonly int[] _slots = new int[8];

    [Benchmark]
    public void ClaimAndReleaseEightSlots()
    {
        _ring.TryClaim(_slots);
        foreach (var slot in _slots) _ring.Release(slot);
    }
}
