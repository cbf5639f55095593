using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>What a log entry does to its blocks.</summary>
public enum LogEntryType : ushort
{
    /// <summary>Blocks of data follow in the batch.</summary>
    Data = 1,
    /// <summary>The blocks were trimmed: they read as zeroes. No data.</summary>
    Trim = 2,
    /// <summary>The blocks were zeroed. No data.</summary>
    Zero = 3,
}

/// <summary>One entry of a batch header: a run of 4 KiB blocks and, for data, the CRC32C of its bytes.</summary>
public readonly record struct LogEntry(long Block, int BlockCount, LogEntryType Type, uint Crc);

/// <summary>
/// The on-disk batch header (format version 1), one 4 KiB block, little-endian:
/// <code>
/// offset size field
///   0     8  magic "ACLOGBT1"
///   8     2  format version (1)
///  10     2  flags (bit 0: sync point, the batch closes its generation)
///  12     4  entry count (at most 168)
///  16    16  volume id
///  32     8  sequence number (1, 2, 3, ... without gaps)
///  40     8  generation
///  48     8  wall-clock time, Unix microseconds
///  56     4  data blocks that follow the header
///  60     4  header CRC32C (over the whole block with this field zero)
///  64     8  durable-through: highest sequence fdatasync'ed before this batch was written
///  72    24  reserved (zero)
///  96  24*n  entries: block (8), block count (4), type (2), reserved (2), data CRC32C (4), reserved (4)
/// </code>
/// Data blocks follow the header in entry order, 4 KiB aligned, so they can be read back in place.
/// </summary>
public static class LogFormat
{
    public const int BlockSize = 4096;
    public const int BlockShift = 12;
    public const ulong Magic = 0x315442474F4C4341; // "ACLOGBT1" read as little-endian
    public const ushort Version = 1;
    public const int EntriesOffset = 96;
    public const int EntrySize = 24;
    public const int MaxEntries = (BlockSize - EntriesOffset) / EntrySize;
    public const ushort SyncPointFlag = 1;

    public static void WriteHeader(Span<byte> block, in BatchHeader header, ReadOnlySpan<LogEntry> entries)
    {
        block[..BlockSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(block, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(block[8..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(block[10..], header.Flags);
        BinaryPrimitives.WriteInt32LittleEndian(block[12..], entries.Length);
        header.VolumeId.TryWriteBytes(block[16..32]);
        BinaryPrimitives.WriteInt64LittleEndian(block[32..], header.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(block[40..], header.Generation);
        BinaryPrimitives.WriteInt64LittleEndian(block[48..], header.TimeMicros);
        BinaryPrimitives.WriteInt32LittleEndian(block[56..], header.DataBlocks);
        BinaryPrimitives.WriteInt64LittleEndian(block[64..], header.DurableThrough);
        var at = EntriesOffset;
        foreach (var entry in entries)
        {
            BinaryPrimitives.WriteInt64LittleEndian(block[at..], entry.Block);
            BinaryPrimitives.WriteInt32LittleEndian(block[(at + 8)..], entry.BlockCount);
            BinaryPrimitives.WriteUInt16LittleEndian(block[(at + 12)..], (ushort)entry.Type);
            BinaryPrimitives.WriteUInt32LittleEndian(block[(at + 16)..], entry.Crc);
            at += EntrySize;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(block[60..], Crc32C.Compute(block[..BlockSize]));
    }

    /// <summary>True when <paramref name="data"/> (a batch's data blocks, in entry order) matches every data entry's checksum.</summary>
    public static bool DataMatches(ReadOnlySpan<LogEntry> entries, ReadOnlySpan<byte> data)
    {
        var at = 0;
        foreach (var entry in entries)
        {
            if (entry.Type != LogEntryType.Data) continue;
            var length = entry.BlockCount * BlockSize;
            if (at + length > data.Length || Crc32C.Compute(data.Slice(at, length)) != entry.Crc) return false;
            at += length;
        }
        return true;
    }

    /// <summary>
    /// Decodes and checks a header block; false when it is not a valid header of this volume
    /// (wrong magic, version, volume, entry count or checksum). Entries go into <paramref name="entries"/>.
    /// </summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> block, Guid volumeId, out BatchHeader header, Span<LogEntry> entries)
    {
        header = default;
        if (block.Length < BlockSize || BinaryPrimitives.ReadUInt64LittleEndian(block) != Magic) return false;
        if (BinaryPrimitives.ReadUInt16LittleEndian(block[8..]) != Version) return false;
        var count = BinaryPrimitives.ReadInt32LittleEndian(block[12..]);
        if (count is < 0 or > MaxEntries || count > entries.Length) return false;
        var stored = BinaryPrimitives.ReadUInt32LittleEndian(block[60..]);
        var crc = Crc32C.Append(0xFFFFFFFFu, block[..60]);
        crc = Crc32C.Append(crc, [0, 0, 0, 0]);
        crc = ~Crc32C.Append(crc, block[64..BlockSize]);
        if (crc != stored) return false;
        if (new Guid(block[16..32]) != volumeId) return false;
        header = new BatchHeader(
            BinaryPrimitives.ReadInt64LittleEndian(block[32..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[40..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[48..]),
            BinaryPrimitives.ReadUInt16LittleEndian(block[10..]),
            volumeId,
            BinaryPrimitives.ReadInt32LittleEndian(block[56..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[64..]),
            count);
        var dataBlocks = 0L;
        var at = EntriesOffset;
        for (var i = 0; i < count; i++)
        {
            var entry = new LogEntry(
                BinaryPrimitives.ReadInt64LittleEndian(block[at..]),
                BinaryPrimitives.ReadInt32LittleEndian(block[(at + 8)..]),
                (LogEntryType)BinaryPrimitives.ReadUInt16LittleEndian(block[(at + 12)..]),
                BinaryPrimitives.ReadUInt32LittleEndian(block[(at + 16)..]));
            if (entry.Block < 0 || entry.BlockCount <= 0 || entry.Type is < LogEntryType.Data or > LogEntryType.Zero) return false;
            if (entry.Type == LogEntryType.Data) dataBlocks += entry.BlockCount;
            entries[i] = entry;
            at += EntrySize;
        }
        return dataBlocks == header.DataBlocks;
    }
}

/// <summary>The fixed fields of a batch header.</summary>
public readonly record struct BatchHeader(
    long Sequence, long Generation, long TimeMicros, ushort Flags, Guid VolumeId, int DataBlocks, long DurableThrough, int EntryCount)
{
    public bool IsSyncPoint => (Flags & LogFormat.SyncPointFlag) != 0;

    /// <summary>Header block plus data blocks.</summary>
    public long SizeBytes => (1L + DataBlocks) << LogFormat.BlockShift;
}
