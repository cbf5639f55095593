using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

public class LogFormatTests
{
    private static readonly Guid Volume = Guid.NewGuid();

    private static (byte[] Block, BatchHeader Header, LogEntry[] Entries) Sample()
    {
        var entries = new[]
        {
            new LogEntry(10, 3, LogEntryType.Data, 0xdeadbeef), new LogEntry(100, 1000, LogEntryType.Trim, 0),
            new LogEntry(7, 1, LogEntryType.Zero, 0), new LogEntry(5000, 2, LogEntryType.Data, 42),
        };
        var header = new BatchHeader(17, 4, 1_700_000_000_000_000, LogFormat.SyncPointFlag, Volume, 5, 16, entries.Length);
        var block = new byte[LogFormat.BlockSize];
        LogFormat.WriteHeader(block, header, entries);
        return (block, header, entries);
    }

    [Fact]
    public void Header_round_trips()
    {
        var (block, header, entries) = Sample();
        var read = new LogEntry[LogFormat.MaxEntries];
        Assert.True(LogFormat.TryReadHeader(block, Volume, out var parsed, read));
        Assert.Equal(header, parsed);
        Assert.Equal(entries, read[..entries.Length]);
        Assert.Equal(6L * 4096, parsed.SizeBytes);
        Assert.Equal("ACLOGBT1", System.Text.Encoding.ASCII.GetString(block, 0, 8));
    }

    [Fact]
    public void Every_single_bit_flip_in_a_header_is_detected()
    {
        var (block, _, _) = Sample();
        var entries = new LogEntry[LogFormat.MaxEntries];
        for (var bit = 0; bit < block.Length * 8; bit++)
        {
            block[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(LogFormat.TryReadHeader(block, Volume, out _, entries), $"flip of bit {bit} went unnoticed");
            block[bit / 8] ^= (byte)(1 << (bit % 8));
        }
        Assert.True(LogFormat.TryReadHeader(block, Volume, out _, entries));
    }

    [Fact]
    public void Another_volumes_header_is_not_accepted()
    {
        var (block, _, _) = Sample();
        Assert.False(LogFormat.TryReadHeader(block, Guid.NewGuid(), out _, new LogEntry[LogFormat.MaxEntries]));
    }

    [Fact]
    public void Crc32c_matches_the_standard_check_value()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0u, Crc32C.Compute([]));
    }

    [Fact]
    public void Checkpoint_round_trips_and_damage_is_an_error()
    {
        var dir = Directory.CreateTempSubdirectory("actorcache-ckpt-").FullName;
        try
        {
            Assert.Null(Checkpoint.Load(dir));
            var checkpoint = new Checkpoint(Volume, 1 << 20, 99, 7);
            checkpoint.Save(dir);
            Assert.Equal(checkpoint, Checkpoint.Load(dir));
            var path = Path.Combine(dir, Checkpoint.FileName);
            var bytes = File.ReadAllBytes(path);
            for (var slot = 0; slot < bytes.Length; slot += 4096) bytes[slot + 30] ^= 1; // every copy it keeps
            File.WriteAllBytes(path, bytes);
            Assert.Contains("damaged", Assert.Throws<BlockTargetException>(() => Checkpoint.Load(dir)).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
