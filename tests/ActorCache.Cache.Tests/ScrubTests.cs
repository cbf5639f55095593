using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// The records a persisted index covers are not read at open; the scrub verifies them after it. A record
/// damaged on disk since is detected whoever gets there first (a read, the destager or the background
/// walk) and never served: its blocks fail with EIO and the volume turns read-only, as a corrupt record
/// found by a full replay makes it. An intact log scrubs clean.
/// </summary>
public sealed class ScrubTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>Every open goes through the persisted index (the default replays small logs whole).</summary>
    private CacheOptions Options(TimeSpan? retention = null) => _fixture.Options(segmentSize: 256 << 10, retention: retention) with
    {
        MaxBatchBlocks = 16,
        FullReplayBelow = 0,
        IndexSaveInterval = TimeSpan.FromHours(1),
    };

    /// <summary>Writes with flushes and closes cleanly (the close persists the index); returns the model and the index it had.</summary>
    private async Task<(byte[] Model, Dictionary<long, ulong> Entries)> WriteAndCloseAsync(int seed)
    {
        var model = new byte[Size];
        var random = new Random(seed);
        await using var cache = _fixture.Open(Size, Options());
        for (var op = 0; op < 150; op++)
        {
            var blocks = random.Next(1, 9);
            var block = random.Next(0, (int)(Size / 4096) - blocks);
            var data = CacheFixture.Pattern(blocks * 4096, random.Next());
            await cache.WriteAsync(block * 4096L, data, fua: false);
            data.CopyTo(model, block * 4096L);
            if (random.Next(6) == 0) await cache.FlushAsync();
        }
        await cache.FlushAsync();
        return (model, cache.Index.Entries().ToDictionary(e => e.Block, e => e.Entry));
    }

    /// <summary>Flips a bit of log block <paramref name="logBlock"/> in its segment file.</summary>
    private void Flip(long logBlock, int offset) => CacheFixture.FlipLogByte(Options(), (logBlock << LogFormat.BlockShift) + offset, 0x20);

    /// <summary>
    /// A block whose newest version is in the log, late in it (the background walk reaches it late) but not in
    /// the last batch: the open checks that one's header (the batch the index was taken at) and replays it all when it changed.
    /// </summary>
    private static (long Block, long LogBlock) LateLoggedBlock(Dictionary<long, ulong> entries)
    {
        var logged = entries.Where(e => BlockIndex.LocationOf(e.Value) == BlockLocation.Log)
            .Select(e => (Block: e.Key, LogBlock: BlockIndex.ValueOf(e.Value))).OrderByDescending(e => e.LogBlock).ToList();
        return logged[logged.Count / 4];
    }

    [Fact]
    public async Task A_corrupt_data_block_the_persisted_index_covers_is_never_served_and_makes_the_volume_read_only()
    {
        var (model, entries) = await WriteAndCloseAsync(seed: 1);
        var (block, logBlock) = LateLoggedBlock(entries);
        Flip(logBlock, offset: 100);

        await using var cache = _fixture.Open(Size, Options());
        Assert.True(cache.Recovery.SkippedBytes > 0, "the open went through the persisted index");
        Assert.Null(cache.Recovery.Corruption); // the open did not read the record

        // The read comes first (or the walk did): either way the record is checked and the block refused.
        var read = new byte[4096];
        var refused = await Assert.ThrowsAsync<BlockTargetException>(async () => await cache.ReadAsync(block * 4096L, read));
        Assert.Equal(BlockError.Io, refused.Error);
        Assert.Contains("corrupt log record", refused.Message);
        Assert.False(cache.TryReadWithoutWaiting(block * 4096L, read), "the fast path does not serve it either");

        Assert.True(cache.Statistics.CorruptRecords == 1, $"{cache.Statistics.CorruptRecords} corrupt records: {cache.ReadOnlyReason}");
        Assert.NotNull(cache.ReadOnlyReason);
        Assert.True(cache.Capabilities.HasFlag(TargetCapabilities.ReadOnly));
        var write = await Assert.ThrowsAsync<BlockTargetException>(async () => await cache.WriteAsync(0, new byte[4096], fua: false));
        Assert.Equal(BlockError.ReadOnly, write.Error);

        // Everything else reads as written; only blocks whose newest version is in the damaged record are refused.
        await cache.Scrubbed;
        var refusedBlocks = 0;
        for (var b = 0L; b < Size / 4096; b++)
        {
            try
            {
                await cache.ReadAsync(b * 4096, read);
            }
            catch (BlockTargetException e) when (e.Error == BlockError.Io)
            {
                refusedBlocks++;
                Assert.True(Math.Abs(BlockIndex.ValueOf(entries[b]) - logBlock) <= 16, $"block {b} refused, but its record is not the damaged one");
                continue;
            }
            Assert.True(model.AsSpan((int)(b * 4096), 4096).SequenceEqual(read), $"block {b} differs from what was written");
        }
        Assert.InRange(refusedBlocks, 1, 16);
    }

    [Fact]
    public async Task A_corrupt_header_the_persisted_index_covers_is_found_by_a_read_of_its_blocks()
    {
        var (_, entries) = await WriteAndCloseAsync(seed: 2);
        var (block, logBlock) = LateLoggedBlock(entries);
        // The header of the block's batch, found through the log.
        long header;
        using (var medium = new SegmentFiles(Options().LogDirectory, Options().SegmentSize))
        {
            var walker = new LogWalker(medium, Checkpoint.Load(Options().LogDirectory)!.VolumeId);
            walker.Seek(0, 1);
            while (walker.TryRead() && walker.EndAddress <= logBlock << LogFormat.BlockShift) walker.Advance();
            Assert.True(walker.Address < logBlock << LogFormat.BlockShift);
            header = walker.Address;
        }
        Flip(header >> LogFormat.BlockShift, offset: LogFormat.EntriesOffset + 16); // an entry's data checksum

        await using var cache = _fixture.Open(Size, Options());
        Assert.True(cache.Recovery.SkippedBytes > 0);
        var refused = await Assert.ThrowsAsync<BlockTargetException>(async () => await cache.ReadAsync(block * 4096L, new byte[4096]));
        Assert.Equal(BlockError.Io, refused.Error);
        Assert.Equal(1, cache.Statistics.CorruptRecords);
    }

    [Fact]
    public async Task The_scrub_finds_a_corrupt_record_without_a_read_and_it_never_reaches_the_backing()
    {
        var (_, entries) = await WriteAndCloseAsync(seed: 3);
        var (block, logBlock) = LateLoggedBlock(entries);
        Flip(logBlock, offset: 4000);
        var corrupt = new byte[4096];
        using (var medium = new SegmentFiles(Options().LogDirectory, Options().SegmentSize))
            Assert.True(medium.TryRead(logBlock << LogFormat.BlockShift, corrupt));

        // Retention 0: the destager moves everything it may to the backing at once, racing the walk.
        await using (var cache = _fixture.Open(Size, Options(retention: TimeSpan.Zero)))
        {
            Assert.True(cache.Recovery.SkippedBytes > 0);
            await cache.Scrubbed.WaitAsync(TimeSpan.FromSeconds(30));
            var statistics = cache.Statistics;
            Assert.Equal(1, statistics.CorruptRecords);
            Assert.Equal(statistics.ScrubTotalBytes, statistics.ScrubVerifiedBytes);
            Assert.Contains("persisted index covers", cache.ReadOnlyReason);
            await Task.Delay(200); // the destager had its chances
        }
        var backing = await File.ReadAllBytesAsync(_fixture.BackingPath);
        Assert.False(backing.AsSpan((int)(block * 4096), 4096).SequenceEqual(corrupt), "the corrupt record reached the backing");
    }

    [Fact]
    public async Task A_drain_that_meets_a_corrupt_record_fails_with_the_reason_instead_of_waiting_for_the_close()
    {
        var (_, entries) = await WriteAndCloseAsync(seed: 5);
        var (_, logBlock) = LateLoggedBlock(entries);
        Flip(logBlock, offset: 4000);
        // Retention of an hour: only the drain (what a switch out of write-back asks for) moves history; it finds the record first.
        await using var cache = _fixture.Open(Size, Options());
        Assert.Null(cache.ReadOnlyReason);
        var drain = cache.DrainAsync();
        var finished = await Task.WhenAny(drain, Task.Delay(TimeSpan.FromSeconds(20)));
        Assert.Same(drain, finished);
        var refused = await Assert.ThrowsAsync<BlockTargetException>(() => drain);
        Assert.Contains("cannot be drained", refused.Message);
        Assert.NotNull(cache.ReadOnlyReason);
    }

    [Fact]
    public async Task An_intact_log_scrubs_clean_and_the_statistics_show_it()
    {
        var (model, _) = await WriteAndCloseAsync(seed: 4);
        await using var cache = _fixture.Open(Size, Options());
        Assert.True(cache.Recovery.SkippedBytes > 0);
        await cache.Scrubbed.WaitAsync(TimeSpan.FromSeconds(30));
        var statistics = cache.Statistics;
        Assert.Equal(cache.Recovery.SkippedBytes, statistics.ScrubTotalBytes);
        Assert.Equal(statistics.ScrubTotalBytes, statistics.ScrubVerifiedBytes);
        Assert.Equal(0, statistics.CorruptRecords);
        Assert.Null(cache.ReadOnlyReason);
        var content = new byte[Size];
        await cache.ReadAsync(0, content);
        Assert.True(model.AsSpan().SequenceEqual(content));
        await cache.WriteAsync(0, new byte[4096], fua: true); // and it takes writes

        // A full replay verifies everything at open: nothing is left to scrub.
        using var other = new CacheFixture();
        await using var replayed = other.Open(Size, other.Options());
        Assert.Equal(0, replayed.Statistics.ScrubTotalBytes);
        Assert.True(replayed.Scrubbed.IsCompleted);
    }
}
