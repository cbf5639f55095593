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

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }
}
