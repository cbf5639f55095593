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

    [Fact]
    public void A_waiting_large_claim_holds_the_head_of_the_line_against_small_ones()
    {
        var ring = new RingBuffer(64 * 4096);
        var line = new RingLine();
        var all = new int[64];
        Assert.True(ring.TryClaim(all));

        var large = ring.NewClaimer();
        var big = new int[32];
        Assert.False(ring.TryClaim(big, large, line)); // nothing free: it waits, and holds the line
        var small = new int[1];
        var smallWaiter = ring.NewClaimer();
        for (var i = 0; i < 32; i++)
        {
            ring.Release(all[i]);
            // Without the reservation each freed slot would go to the small claims, and the large one would never see 32 free.
            Assert.False(ring.TryClaim(small, 0, line), $"a small claim took slot {i + 1} of the 32 the large one waits for");
            Assert.False(ring.TryClaim(small, smallWaiter, line), "a smaller waiting claim took the line from a larger one");
        }
        Assert.True(ring.TryClaim(big, large, line));
        foreach (var slot in all[32..]) ring.Release(slot); // the line's share is of what it can reach: the free slots and its own
        Assert.True(ring.TryClaim(small, 0, line), "the line is free again once the large claim has its slots");
    }

    [Fact]
    public async Task A_claim_that_gives_up_lets_go_of_the_line_and_wakes_the_claims_it_held_back()
    {
        var ring = FullRing(free: 8);
        var line = new RingLine();

        var large = ring.NewClaimer();
        Assert.False(ring.TryClaim(new int[32], large, line));
        var small = new int[1];
        var held = ring.SpaceFreed;
        var smallWaiter = ring.NewClaimer();
        Assert.False(ring.TryClaim(small, smallWaiter, line), "8 slots are free but held for the large claim");

        ring.Withdraw(large, line); // its write timed out or was cancelled: no release may ever come for the small one
        await held.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(ring.TryClaim(small, smallWaiter, line));
    }

    [Fact]
    public void The_oldest_waiting_claim_holds_the_line_and_other_lines_are_not_held_back()
    {
        var ring = new RingBuffer(64 * 4096);
        var all = new int[64];
        Assert.True(ring.TryClaim(all));
        RingLine volume = new(), other = new();

        var older = ring.NewClaimer();
        var younger = ring.NewClaimer();
        Assert.False(ring.TryClaim(new int[32], younger, volume)); // first to wait: it holds the line
        Assert.False(ring.TryClaim(new int[2], older, volume)); // an older waiting claim takes the line over
        ring.Release(all[0]);
        ring.Release(all[1]);
        Assert.False(ring.TryClaim(new int[1], 0, volume), "the older claim's two slots were taken from it");
        // Another volume's claims are not held back: a volume whose log stalls keeps its slots, and must not stop the others.
        var elsewhere = new int[1];
        Assert.True(ring.TryClaim(elsewhere, 0, other));
        ring.Release(elsewhere[0]);
        Assert.True(ring.TryClaim(new int[2], older, volume));
        // Done: the younger claim takes the line on its next try.
        Assert.False(ring.TryClaim(new int[32], younger, volume));
        ring.Release(all[2]);
        Assert.False(ring.TryClaim(new int[1], 0, volume));
    }

    [Fact]
    public void One_volume_holds_at_most_three_quarters_of_the_ring_and_the_rest_stays_for_the_others()
    {
        var ring = new RingBuffer(256 * 4096);
        var stalled = new RingLine();
        var other = new RingLine();
        Assert.Equal(192, ring.MaxSlotsPerLine);
        var held = new int[192];
        Assert.True(ring.TryClaim(held, 0, stalled));
        Assert.Equal(192, stalled.HeldSlots);
        Assert.False(ring.TryClaim(new int[1], 0, stalled), "past its share although 64 slots are free");
        var others = new int[64];
        Assert.True(ring.TryClaim(others, 0, other));

        // Its writes logged: the line holds that many fewer, even while a reader still holds one of the slots.
        ring.ReleaseAll(others, other);
        Assert.True(ring.TryAddReference(held[0]));
        ring.ReleaseAll(held.AsSpan(0, 10), stalled);
        Assert.Equal(182, stalled.HeldSlots);
        Assert.Equal(73, ring.FreeSlots);
        Assert.True(ring.TryClaim(new int[9], 0, stalled));
        ring.Release(held[0]);
        ring.ReleaseAll(held.AsSpan(10), stalled);
        Assert.Equal(9, stalled.HeldSlots);
        Assert.Equal(0, other.HeldSlots);

        // A line that holds nothing may take a claim larger than its share (a 32 MiB write on a small ring), and then no more.
        var large = new RingLine();
        Assert.True(ring.TryClaim(new int[200], 0, large));
        Assert.False(ring.TryClaim(new int[1], 0, large));
    }

    [Fact]
    public void Stalled_volumes_each_leave_a_quarter_of_what_they_found_free_so_several_of_them_leave_room_for_the_others()
    {
        var ring = new RingBuffer(256 * 4096);
        // Volumes whose logs stall take slots one write at a time and never give them back.
        static int Fill(RingBuffer ring, RingLine line)
        {
            while (ring.TryClaim(new int[1], 0, line)) { }
            return line.HeldSlots;
        }
        Assert.Equal(192, Fill(ring, new RingLine())); // three quarters of the ring
        Assert.Equal(48, Fill(ring, new RingLine())); // three quarters of the 64 left (a fixed share of the ring took them all)
        Assert.Equal(12, Fill(ring, new RingLine()));
        Assert.Equal(4, ring.FreeSlots);
        // A volume whose log keeps up still writes.
        var healthy = new RingLine();
        var slots = new int[1];
        Assert.True(ring.TryClaim(slots, 0, healthy));
        ring.ReleaseAll(slots, healthy);
        Assert.Equal(4, ring.FreeSlots);
    }

    [Fact]
    public async Task A_reservation_taken_over_wakes_the_claims_it_no_longer_holds_back()
    {
        var ring = FullRing(free: 8);
        var line = new RingLine();
        var older = ring.NewClaimer();
        var younger = ring.NewClaimer();
        Assert.False(ring.TryClaim(new int[32], younger, line)); // holds all 8 free slots back
        var woken = ring.SpaceFreed;
        Assert.False(ring.TryClaim(new int[1], 0, line));
        Assert.False(ring.TryClaim(new int[16], older, line)); // takes the line over: 16 held, so 8 free are still held
        // The wake-up lets the small claim try again (no release may come): still held back, but not left asleep.
        await woken.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task A_batch_released_at_once_wakes_the_waiting_once_it_leaves_room()
    {
        var ring = new RingBuffer(256 * 4096);
        var all = new int[256];
        Assert.True(ring.TryClaim(all));
        var space = ring.SpaceFreed;
        ring.ReleaseAll(all.AsSpan(0, 100));
        await space.WaitAsync(TimeSpan.FromSeconds(5));
        var again = new int[100];
        Assert.True(ring.TryClaim(again));
        Assert.Equal(all[..100].Order(), again.Order()); // handed out again, in ascending order
        Assert.Equal(again.Order(), again);
    }

    /// <summary>A ring of 64 slots with all but <paramref name="free"/> claimed.</summary>
    private static RingBuffer FullRing(int free)
    {
        var ring = new RingBuffer(64 * 4096);
        var all = new int[64];
        Assert.True(ring.TryClaim(all));
        for (var i = 0; i < free; i++) ring.Release(all[i]);
        return ring;
    }
}
