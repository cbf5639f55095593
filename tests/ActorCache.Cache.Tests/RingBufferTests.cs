namespace ActorCache.Cache.Tests;

/// <summary>The ring is native memory with 64-bit slot offsets: rings above 2 GiB work all the way to their last slot.</summary>
public sealed class RingBufferTests
{
    [Fact]
    public void A_ring_above_2_GiB_reads_and_writes_its_last_slot()
    {
        // 3 GiB of address space; only the pages touched here are ever backed by memory.
        var ring = new RingBuffer(3L << 30);
        Assert.Equal(786432, ring.SlotCount);
        var slots = new int[ring.SlotCount];
        Assert.True(ring.TryClaim(slots));
        var last = slots.Max();
        Assert.Equal(ring.SlotCount - 1, last);

        var pattern = CacheFixture.Pattern(4096, 7);
        pattern.CopyTo(ring.Slot(last));
        Assert.Equal(pattern, ring.SlotMemory(last).ToArray());
        Assert.Equal(pattern, ring.SlotRun(last - 1, 2).Span[4096..].ToArray());

        // Memory views stop at 1 GiB chunks: a run across a chunk end is refused, a run up to it is fine.
        var chunkEnd = 1 << RingBuffer.ChunkSlotsShift;
        Assert.Equal(2 * 4096, ring.SlotRun(chunkEnd - 2, 2).Length);
        Assert.Throws<ArgumentException>(() => ring.SlotRun(chunkEnd - 1, 2));
        Assert.False(RingBuffer.InOneChunk(chunkEnd - 1, chunkEnd));

        foreach (var slot in slots) ring.Release(slot);
        Assert.Equal(ring.SlotCount, ring.FreeSlots);
    }

    [Fact]
    public void A_ring_beyond_the_limit_is_refused_with_a_clear_message()
    {
        var e = Assert.Throws<ArgumentException>(() => new RingBuffer(RingBuffer.MaxBytes + 4096));
        Assert.Contains("largest supported ring", e.Message);
    }
}
