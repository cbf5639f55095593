namespace ActorCache.Cache.Tests;

/// <summary>
/// Released log segments are kept as spares and renamed into place as later segments (their blocks
/// are written already, so an fdatasync into them commits no file-system journal). The stale records
/// they still hold must never be replayed: a log that has recycled its segments recovers exactly the
/// acknowledged data, reports neither corruption nor a torn tail, and keeps working.
/// </summary>
public sealed class SegmentRecyclingTests : IDisposable
{
    private const long Size = 16 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task A_log_that_recycled_its_segments_recovers_the_newest_data_and_nothing_stale()
    {
        var options = _fixture.Options(retention: TimeSpan.Zero); // 1 MiB segments, destaged as soon as durable
        var medium = new SegmentFiles(options.LogDirectory, options.SegmentSize);
        var model = new byte[Size];
        var random = new Random(7);
        var reusedSegments = 0;
        var spareFilesSeen = 0;
        await using (var cache = _fixture.Open(Size, options, medium: medium))
        {
            // Several rounds over the same blocks, each round far larger than a segment: the log
            // releases segments behind the horizon and reuses them for the rounds after.
            for (var round = 0; round < 6; round++)
            {
                for (var i = 0; i < 96; i++)
                {
                    var offset = random.Next(0, 64) * 32768L;
                    var data = CacheFixture.Pattern(32768, round * 1000 + i);
                    await CacheFixture.StagedWriteAsync(cache, offset, data, fua: false);
                    data.CopyTo(model, offset);
                }
                await cache.FlushAsync();
                for (var i = 0; i < 200 && cache.Index.CachedBlocks > 0; i++) await Task.Delay(25);
                if (medium.SpareCount > 0)
                {
                    reusedSegments++;
                    // (A spare can be renamed into place by the next batch at any moment, so the file is looked for right here.)
                    if (Directory.EnumerateFiles(options.LogDirectory).Any(f => Path.GetFileName(f).StartsWith("spare-"))) spareFilesSeen++;
                }
            }
            Assert.True(reusedSegments > 0, "released segments were kept for reuse");
            Assert.True(spareFilesSeen > 0, "spares are kept as spare-* files");

            // The last writes are closed without waiting for the destager: reopening replays whatever
            // is still in the log, out of recycled files that also hold older records.
            var last = CacheFixture.Pattern(256 << 10, 99);
            await CacheFixture.StagedWriteAsync(cache, 1 << 20, last, fua: true);
            last.CopyTo(model, 1 << 20);
        }

        await using var recovered = _fixture.Open(Size, options);
        Assert.Null(recovered.Recovery.Corruption);
        Assert.Null(recovered.Recovery.TornTail);
        var content = new byte[Size];
        await recovered.ReadAsync(0, content);
        Assert.True(model.AsSpan().SequenceEqual(content), "the recovered volume differs from what was acknowledged");

        // And the recovered log takes new writes into its recycled segments.
        var more = CacheFixture.Pattern(64 << 10, 100);
        await recovered.WriteAsync(2 << 20, more, fua: true);
        var read = new byte[more.Length];
        await recovered.ReadAsync(2 << 20, read);
        Assert.Equal(more, read);
    }

    [Fact]
    public async Task A_clean_restart_leaves_the_rest_of_the_tail_segment_written()
    {
        // After a commit the zeroes ahead turn the rest of the (1 MiB) segment into written extents. A restart after a clean stop
        // has nothing numbered past its tail to wipe, and must not punch that space back into holes: every commit there would
        // pay for it again (the zeroes ahead written again, or a journal commit per fdatasync).
        var options = _fixture.Options();
        var file = Path.Combine(options.LogDirectory, "segment-0000000000.log");
        var first = CacheFixture.Pattern(16 << 10, 1);
        await using (var cache = _fixture.Open(Size, options))
        {
            await cache.WriteAsync(0, first, fua: true);
            for (var i = 0; i < 500 && FirstHole(file) < options.SegmentSize; i++) await Task.Delay(20);
            Assert.Equal(options.SegmentSize, FirstHole(file));
        }

        await using var reopened = _fixture.Open(Size, options);
        Assert.Null(reopened.Recovery.TornTail);
        Assert.Equal(options.SegmentSize, FirstHole(file));
        var more = CacheFixture.Pattern(16 << 10, 2);
        await reopened.WriteAsync(1 << 20, more, fua: true);
        var read = new byte[first.Length];
        await reopened.ReadAsync(0, read);
        Assert.Equal(first, read);
        await reopened.ReadAsync(1 << 20, read);
        Assert.Equal(more, read);
    }

    [Fact]
    public void Spares_past_a_lowered_capacity_are_deleted_when_the_log_opens()
    {
        var directory = _fixture.Options().LogDirectory;
        const long segmentSize = 1 << 20;
        using (var medium = new SegmentFiles(directory, segmentSize))
        {
            for (var segment = 0; segment < 4; segment++) medium.Write(segment * segmentSize, [new byte[4096]]);
            medium.Sync();
            for (var segment = 0; segment < 3; segment++) medium.Release(segment);
            Assert.Equal(3, medium.SpareCount); // every released segment is kept while within capacity
        }
        // Opened again with room for two files (a smaller share of the file system, say): the segment in use and one spare.
        using (var medium = new SegmentFiles(directory, segmentSize, maxFiles: 2))
            Assert.Equal(1, medium.SpareCount);
        Assert.Single(Directory.EnumerateFiles(directory, "spare-*.log"));
    }

    /// <summary>Where the file's first hole begins (ext4 counts a reserved, never written extent as one): its size if it has none.</summary>
    private static long FirstHole(string file)
    {
        using var handle = File.OpenHandle(file);
        return ActorCache.Blocks.LibC.Seek(handle, 0, ActorCache.Blocks.LibC.SEEK_HOLE);
    }

    [Fact]
    public async Task Segments_past_a_cut_torn_tail_are_wiped_before_they_become_spares()
    {
        // Records past a torn tail were never durable, and their sequence numbers are used again: a
        // recycled file must not carry them, or a later crash could replay them as the next records.
        var options = _fixture.Options(segmentSize: 64 << 10) with { MaxBatchBlocks = 8 };
        var first = CacheFixture.Pattern(16 << 10, 1);
        await using (var cache = _fixture.Open(Size, options))
        {
            await cache.WriteAsync(0, first, fua: true);
            // Many unflushed batches after it: their headers say only the first write was durable.
            for (var i = 1; i <= 40; i++) await cache.WriteAsync(i * 32768L, CacheFixture.Pattern(32768, i + 1), fua: false);
        }

        // Tear a batch early in the unflushed run (damage its data), as if it never landed whole.
        var checkpoint = Checkpoint.Load(options.LogDirectory)!;
        long torn;
        using (var medium = new SegmentFiles(options.LogDirectory, options.SegmentSize))
        {
            var reader = new LogReader(medium, checkpoint.VolumeId);
            var address = checkpoint.Horizon;
            var sequence = checkpoint.Sequence;
            Assert.True(reader.TryFind(ref address, sequence, out var header)); // the flushed write
            address += header.SizeBytes;
            Assert.True(reader.TryFind(ref address, sequence + 1, out header));
            torn = address;
            var data = new byte[4096];
            Assert.True(medium.TryRead(LogReader.DataAddress(torn), data));
            data[100] ^= 0xFF;
            medium.Write(LogReader.DataAddress(torn), [data]);
            medium.Sync();
            Assert.True(medium.Segments.Count > 2, "the unflushed run spans later segments");
        }
        // As after a crash: the close saved the index, which proves the log durable through its last batch (then the torn batch
        // would be corruption); a killed node saves none past what it had synced.
        File.Delete(Path.Combine(options.LogDirectory, PersistedIndex.FileName));

        await using (var recovered = _fixture.Open(Size, options))
        {
            Assert.Null(recovered.Recovery.Corruption);
            Assert.NotNull(recovered.Recovery.TornTail);
            var content = new byte[first.Length];
            await recovered.ReadAsync(0, content);
            Assert.Equal(first, content);
        }
        var spares = Directory.EnumerateFiles(options.LogDirectory, "spare-*.log").ToList();
        Assert.NotEmpty(spares);
        foreach (var spare in spares)
            Assert.False(File.ReadAllBytes(spare).AsSpan().ContainsAnyExcept((byte)0), $"{Path.GetFileName(spare)} still holds records from past the torn tail");
    }
}
