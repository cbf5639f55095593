using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>Bit flips anywhere in the written log: each is detected and reported, and READ never returns data nobody wrote.</summary>
public sealed class CorruptionTests : IDisposable
{
    private const long Size = 512 << 10;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Flipped_bits_in_headers_and_data_are_detected_and_never_served()
    {
        var random = new Random(21);
        var options = _fixture.Options(segmentSize: 256 << 10) with { MaxBatchBlocks = 16 };
        var blocks = (int)(Size / 4096);
        var history = Enumerable.Range(0, blocks).Select(_ => new HashSet<string> { Convert.ToHexString(new byte[4096]) }).ToArray();
        var model = new byte[Size];
        await using (var cache = _fixture.Open(Size, options))
        {
            for (var op = 0; op < 120; op++)
            {
                var count = random.Next(1, 6);
                var block = random.Next(0, blocks - count);
                var data = new byte[count * 4096];
                random.NextBytes(data);
                await cache.WriteAsync(block * 4096L, data, fua: false);
                data.CopyTo(model, block * 4096L);
                for (var b = 0; b < count; b++) history[block + b].Add(Convert.ToHexString(data, b * 4096, 4096));
                if (random.Next(5) == 0) await cache.FlushAsync();
            }
        }

        // Where the batches are.
        var batches = new List<(long Address, long Size)>();
        using (var medium = new SegmentFiles(options.LogDirectory, options.SegmentSize))
        {
            var reader = new LogReader(medium, Checkpoint.Load(options.LogDirectory)!.VolumeId);
            long address = 0, sequence = 1;
            while (reader.TryFind(ref address, sequence++, out var header))
            {
                batches.Add((address, header.SizeBytes));
                address += header.SizeBytes;
            }
        }
        Assert.True(batches.Count > 20);

        for (var trial = 0; trial < 40; trial++)
        {
            var (batchAddress, batchSize) = batches[trial < 4 ? batches.Count - 1 - trial % 2 : random.Next(batches.Count)];
            // A sync-point record (a FLUSH after its writes were batched) is a header without data.
            var inHeader = trial % 2 == 0 || batchSize == 4096;
            var at = batchAddress + (inHeader ? random.Next(0, 4096) : random.NextInt64(4096, batchSize));
            var image = Path.Combine(_fixture.Directory, $"flip-{trial}");
            CopyDirectory(options.LogDirectory, image);
            var segmentFile = Path.Combine(image, $"segment-{at / options.SegmentSize:D10}.log");
            using (var file = File.Open(segmentFile, FileMode.Open))
            {
                file.Position = at % options.SegmentSize;
                var b = file.ReadByte();
                file.Position = at % options.SegmentSize;
                file.WriteByte((byte)(b ^ (1 << random.Next(8))));
            }
            var backing = Path.Combine(image, "backing.img");
            File.Copy(_fixture.BackingPath, backing);

            await using var cache = _fixture.Open(Size, options with { LogDirectory = image }, backing: FileBacking.Open(backing, Size, create: false));
            var detected = cache.Recovery.Corruption is not null || cache.Recovery.TornTail is not null;
            Assert.True(detected, $"trial {trial}: flip at {at} ({(inHeader ? "header" : "data")}) of batch at {batchAddress} size {batchSize} went unnoticed; replayed {cache.Recovery.BatchesReplayed} of {batches.Count}, tail {cache.Recovery.Tail}");
            if (cache.Recovery.Corruption is not null)
            {
                var refused = await Assert.ThrowsAsync<BlockTargetException>(async () => await cache.WriteAsync(0, new byte[4096], fua: false));
                Assert.Equal(BlockError.ReadOnly, refused.Error);
            }
            for (var block = 0; block < blocks; block++)
            {
                var read = new byte[4096];
                try
                {
                    await cache.ReadAsync(block * 4096L, read);
                }
                catch (BlockTargetException e) when (e.Error == BlockError.Io)
                {
                    continue; // refused, as it must be when the newest version may be damaged
                }
                Assert.True(history[block].Contains(Convert.ToHexString(read)), $"trial {trial}: block {block} returned data nobody wrote");
                if (cache.Recovery.TornTail is null)
                    Assert.True(model.AsSpan(block * 4096, 4096).SequenceEqual(read), $"trial {trial}: block {block} is not its newest version; entry {cache.Index.Get(block):x}; {cache.Recovery.Corruption}; damaged {cache.Recovery.DamagedBlocks?.Count} all {cache.Recovery.AllDamaged} at {cache.Recovery.DamageAddress}; flip at {at} in batch {batchAddress}+{batchSize}");
            }
        }
    }

    /// <summary>
    /// One corrupt record among records written while its sync was in flight: the next records do not vouch for it (their
    /// durable-through is older), a later one does. Replay resumes at the very next intact record, so only the corrupt
    /// record's blocks are refused; it used to resume at the vouching record, skip the intact ones between and refuse every block.
    /// </summary>
    [Fact]
    public async Task A_corrupt_record_costs_its_own_blocks_only_when_the_records_after_it_are_intact()
    {
        var options = _fixture.Options(segmentSize: 1 << 20) with { MaxBatchBlocks = 4 };
        var blocks = (int)(Size / 4096);
        var model = new byte[Size];
        await using (var cache = _fixture.Open(Size, options))
        {
            // Batches without a FLUSH between them (each durable-through 0), then a FLUSH, then batches that vouch for them all.
            for (var i = 0; i < 96; i++)
            {
                var data = CacheFixture.Pattern(4096, 1000 + i);
                await cache.WriteAsync(i * 4096L, data, fua: false);
                data.CopyTo(model, i * 4096L);
            }
            await cache.FlushAsync();
            for (var i = 96; i < 112; i++)
            {
                var data = CacheFixture.Pattern(4096, 1000 + i);
                await cache.WriteAsync(i * 4096L, data, fua: false);
                data.CopyTo(model, i * 4096L);
            }
            await cache.FlushAsync();
        }
        File.Delete(Path.Combine(options.LogDirectory, "index")); // as after a crash: nothing says how far the log was durable

        // A data record in the middle of the unflushed run, whose next record does not vouch for it.
        (long Address, BatchHeader Header) target = default;
        using (var medium = new SegmentFiles(options.LogDirectory, options.SegmentSize))
        {
            var reader = new LogReader(medium, Checkpoint.Load(options.LogDirectory)!.VolumeId);
            var headers = new List<(long Address, BatchHeader Header)>();
            long address = 0, sequence = 1;
            while (reader.TryFind(ref address, sequence++, out var header))
            {
                headers.Add((address, header));
                address += header.SizeBytes;
            }
            for (var i = 2; i + 1 < headers.Count && target.Address == 0; i++)
                if (headers[i].Header.DataBlocks > 0 && headers[i + 1].Header.DurableThrough < headers[i].Header.Sequence) target = headers[i];
        }
        Assert.True(target.Address > 0, "no record is followed by one that does not vouch for it: the test exercises nothing");
        CacheFixture.FlipLogByte(options, target.Address + 4096 + 100, 0x10); // in its first data block

        await using var reopened = _fixture.Open(Size, options);
        Assert.NotNull(reopened.Recovery.Corruption);
        Assert.False(reopened.Recovery.AllDamaged, $"every block refused for one corrupt record: {reopened.Recovery.Corruption}");
        Assert.NotNull(reopened.Recovery.DamagedBlocks);
        var refused = 0;
        for (var block = 0; block < blocks; block++)
        {
            var read = new byte[4096];
            try
            {
                await reopened.ReadAsync(block * 4096L, read);
            }
            catch (BlockTargetException e) when (e.Error == BlockError.Io)
            {
                Assert.Contains((long)block, reopened.Recovery.DamagedBlocks!);
                refused++;
                continue;
            }
            Assert.True(model.AsSpan(block * 4096, 4096).SequenceEqual(read), $"block {block} is not its newest version");
        }
        Assert.InRange(refused, 1, options.MaxBatchBlocks);
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }
}
