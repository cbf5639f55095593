namespace ActorCache.Cache.Tests;

/// <summary>
/// The index costs per cached block, whatever the density (DESIGN §3: at most 16 bytes per cached block,
/// nothing per untouched extent), answers every lookup like a plain array of entries would, and stays
/// right for readers that never lock while its one writer inserts, removes and rebuilds.
/// </summary>
public sealed class BlockIndexTests
{
    [Theory]
    [InlineData(1)] // dense: every block of the volume cached
    [InlineData(8)]
    [InlineData(1000)]
    public void Index_bytes_per_cached_block_stay_within_16_at_any_density(int every)
    {
        const long blocks = 8L << 18; // an 8 GiB volume
        var index = new BlockIndex(blocks);
        var random = new Random(every);
        long cached = 0;
        for (long block = 0; block < blocks; block += every)
        {
            var at = every == 1 ? block : block + random.Next(every); // random placement within each stride
            index.Set(at, BlockIndex.Encode(BlockLocation.Log, 1_000_000 + at));
            cached++;
        }
        Assert.Equal(cached, index.CachedBlocks);
        var perBlock = (double)index.FootprintBytes / cached;
        Assert.True(perBlock <= 16, $"1/{every}: {index.FootprintBytes} bytes for {cached} cached blocks = {perBlock:F2} per block");
    }

    [Fact]
    public void A_terabyte_volume_with_a_gigabyte_cached_at_random_uses_about_four_MiB()
    {
        const long blocks = 1L << 28; // 1 TiB
        var index = new BlockIndex(blocks);
        var empty = index.FootprintBytes;
        Assert.True(empty <= 64 << 10, $"an empty 1 TiB index takes {empty} bytes");
        var random = new Random(7);
        while (index.CachedBlocks < 1 << 18) // 1 GiB of 4 KiB blocks
        {
            var block = random.NextInt64(blocks);
            index.Set(block, BlockIndex.Encode(BlockLocation.Log, block));
        }
        Assert.True(index.FootprintBytes <= 4L << 20, $"{index.FootprintBytes} bytes for {index.CachedBlocks} cached blocks");
    }

    [Fact]
    public void Lookups_match_a_plain_array_through_inserts_removals_and_rebuilds()
    {
        const int blocks = 3 << 16; // three regions
        var index = new BlockIndex(blocks);
        var model = new ulong[blocks];
        var random = new Random(3);
        for (var op = 0; op < 400_000; op++)
        {
            // Hot spots and sparse blocks, so tables grow, fill with tombstones and shrink again.
            var block = random.Next(4) == 0 ? random.Next(blocks) : random.Next(2000) + 65_000;
            var entry = random.Next(3) == 0 ? 0 : Entry(random);
            index.Set(block, entry);
            model[block] = entry;
            if (op % 50_000 == 0) index.DropIdlePages(idleSweeps: 1);
        }
        for (var block = 0; block < blocks; block++) Assert.Equal(model[block], index.Get(block));
        Assert.Equal(model.Count(e => e != 0), index.CachedBlocks);
        Assert.Equal(model.Select((e, b) => (Block: (long)b, Entry: e)).Where(p => p.Entry != 0), index.Entries());
        var next = index.NextCached(64_000, blocks);
        Assert.Equal(Array.FindIndex(model, 64_000, e => e != 0), next);
    }

    [Fact]
    public async Task Readers_without_locks_see_only_entries_that_were_written()
    {
        // The writer moves each block through versions whose entry names the block and the version; a
        // reader must see 0 or an entry of that block, never a torn word or another block's entry, while
        // tables grow, shrink and are rebuilt under it.
        const int blocks = 1 << 17;
        var index = new BlockIndex(blocks);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var failures = 0L;
        var readers = Enumerable.Range(0, 2).Select(r => Task.Run(() =>
        {
            var random = new Random(r);
            while (!stop.IsCancellationRequested)
            {
                var block = random.Next(blocks);
                var entry = index.Get(block);
                if (entry != 0 && (BlockIndex.ValueOf(entry) & 0xFFFFFFF) != block) Interlocked.Increment(ref failures);
            }
        })).ToArray();
        var writer = new Random(9);
        var version = 0L;
        while (!stop.IsCancellationRequested)
        {
            var block = writer.Next(blocks);
            index.Set(block, writer.Next(4) == 0 ? 0 : BlockIndex.Encode(BlockLocation.Log, ((++version & 0xFFFF) << 28) | (uint)block));
        }
        await Task.WhenAll(readers);
        Assert.Equal(0, failures);
    }

    [Fact]
    public void Entries_round_trip_every_kind_including_unlogged_zeroes_and_large_log_addresses()
    {
        var index = new BlockIndex(1 << 20);
        ulong[] entries =
        [
            BlockIndex.Encode(BlockLocation.Ring, 123_456),
            BlockIndex.Encode(BlockLocation.Log, (1L << 44) + 17),
            BlockIndex.Encode(BlockLocation.Zero, 99),
            BlockIndex.UnloggedZero(long.MaxValue),
            BlockIndex.UnloggedZero(5),
        ];
        for (var i = 0; i < entries.Length; i++) index.Set(i * 70_001L, entries[i]);
        for (var i = 0; i < entries.Length; i++) Assert.Equal(entries[i], index.Get(i * 70_001L));
        Assert.True(BlockIndex.IsLogged(entries[2]));
        Assert.False(BlockIndex.IsLogged(entries[3]));
    }

    private static ulong Entry(Random random) => random.Next(3) switch
    {
        0 => BlockIndex.Encode(BlockLocation.Ring, random.Next(1 << 20)),
        1 => BlockIndex.Encode(BlockLocation.Log, random.NextInt64(1L << 40)),
        _ => BlockIndex.Encode(BlockLocation.Zero, random.NextInt64(1L << 40)),
    };
}
