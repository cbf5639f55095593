using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Where recovery starts: everything before <see cref="Horizon"/> is on the backing (destaged and
/// fdatasync'ed), so replay reads only the log from there on; how long the snapshot store was when
/// the step was complete (records past that were written after it and are checked in full when the
/// volume opens: a torn one is cut off, it was never needed yet); and <see cref="RestorableFrom"/>, where
/// a destage step may already have overwritten the backing although the horizon has not moved past it
/// (a step that failed or was cut off by a crash): the sync points before that batch no longer read true.
/// </summary>
/// <remarks>
/// The file (version 4, 8 KiB) holds two 4 KiB slots written in turn, each with a save counter and a
/// CRC; the valid slot with the higher counter is the checkpoint. A save overwrites the older slot in
/// place and fdatasyncs it, so it needs no free space (a log whose file system is full still moves its
/// horizon) and a torn save leaves the previous checkpoint readable. Slot layout, little-endian:
/// <code>
/// offset size field
///   0     8  magic "ACCKPT04"
///   8    16  volume id
///  24     8  horizon: log address of the first batch still needed
///  32     8  sequence number of that batch
///  40     8  generation at the horizon
///  48     8  snapshot store length
///  56     8  save counter
///  64     8  restorable from: the first batch whose sync point (one batch before it) a view may still read
///  72     4  CRC32C of the bytes before it
/// </code>
/// Older files are still read: version 1 ("ACCKPT01", 52 bytes: no store length), version 2
/// ("ACCKPT02", 60 bytes) and version 3 files ("ACCKPT03" slots, the CRC at 64: restorable from the horizon);
/// the first save rewrites them whole as version 4 (so a version 3 node never finds an older slot of its own beside it).
/// </remarks>
public sealed record Checkpoint(Guid VolumeId, long Horizon, long Sequence, long Generation, long StoreLength = 0, long RestorableFrom = 0)
{
    private const ulong MagicV1 = 0x313054504B434341; // "ACCKPT01"
    private const ulong MagicV2 = 0x323054504B434341; // "ACCKPT02"
    private const ulong MagicV3 = 0x333054504B434341; // "ACCKPT03"
    private const ulong Magic = 0x343054504B434341; // "ACCKPT04"
    private const int SlotSize = 4096;
    private const int RecordSizeV3 = 68;
    private const int RecordSize = 76;

    /// <summary>The first batch whose preceding sync point still reads true: the horizon's, or later while a step's writes may be on the backing.</summary>
    public long FirstRestorable => Math.Max(Sequence, RestorableFrom);
    public const string FileName = "checkpoint";

    public static Checkpoint New() => new(Guid.NewGuid(), 0, 1, 1);

    /// <summary>Reads the checkpoint in <paramref name="directory"/>; null when there is none yet. A damaged one is an error, not a fresh start.</summary>
    public static Checkpoint? Load(string directory) => Load(new LogDirectory(directory));

    /// <inheritdoc cref="Load(string)"/>
    public static Checkpoint? Load(ILogDirectory directory)
    {
        var bytes = ReadAll(directory);
        if (bytes is null) return null;
        return Read(bytes, out _) ?? throw new BlockTargetException(BlockError.Io,
            $"log checkpoint {Path.Combine(directory.Path, FileName)} is damaged; the log cannot be replayed safely. Restore the volume from a replica or snapshot");
    }

    /// <summary>The checkpoint file's bytes, or null when there is none.</summary>
    private static byte[]? ReadAll(ILogDirectory directory)
    {
        if (!directory.Exists(FileName)) return null;
        using var file = directory.Open(FileName, FileMode.Open);
        var bytes = new byte[file.Length];
        var read = 0;
        while (read < bytes.Length)
        {
            var n = file.Read(bytes.AsSpan(read), read);
            if (n == 0) break;
            read += n;
        }
        return bytes.AsSpan(0, read).ToArray();
    }

    /// <summary>The checkpoint in a file's bytes (any version), with its save counter; null when no part of it is valid.</summary>
    private static Checkpoint? Read(byte[] bytes, out long counter)
    {
        counter = 0;
        if (bytes.Length is 52 or 60)
        {
            var magic = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            if (!(bytes.Length == 52 ? magic == MagicV1 : magic == MagicV2) ||
                BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4)) != Crc32C.Compute(bytes.AsSpan(0, bytes.Length - 4)))
                return null;
            return Decode(bytes, bytes.Length == 60 ? BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(48)) : 0);
        }
        Checkpoint? best = null;
        for (var slot = 0; slot + RecordSizeV3 <= bytes.Length && slot < 2 * SlotSize; slot += SlotSize)
        {
            // A file saved by version 3 keeps that slot until it is overwritten: both kinds are read.
            var magic = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(slot));
            var crcAt = (magic == Magic ? RecordSize : RecordSizeV3) - 4;
            if (magic is not (Magic or MagicV3) || slot + crcAt + 4 > bytes.Length) continue;
            var record = bytes.AsSpan(slot, crcAt + 4);
            if (BinaryPrimitives.ReadUInt32LittleEndian(record[crcAt..]) != Crc32C.Compute(record[..crcAt])) continue;
            var saved = BinaryPrimitives.ReadInt64LittleEndian(record[56..]);
            if (best is not null && saved <= counter) continue;
            var decoded = Decode(record, BinaryPrimitives.ReadInt64LittleEndian(record[48..]));
            if (magic == Magic) decoded = decoded with { RestorableFrom = BinaryPrimitives.ReadInt64LittleEndian(record[64..]) };
            (best, counter) = (decoded, saved);
        }
        return best;
    }

    private static Checkpoint Decode(ReadOnlySpan<byte> bytes, long storeLength) => new(new Guid(bytes[8..24]),
        BinaryPrimitives.ReadInt64LittleEndian(bytes[24..]),
        BinaryPrimitives.ReadInt64LittleEndian(bytes[32..]),
        BinaryPrimitives.ReadInt64LittleEndian(bytes[40..]),
        storeLength);

    public void Save(string directory) => Save(new LogDirectory(directory));

    public void Save(ILogDirectory directory)
    {
        var existing = ReadAll(directory);
        long counter = 0;
        // A file with a version 3 slot is written whole, as the older versions are: a save into one slot would leave a valid
        // version 3 slot beside it, which a version 3 node (after a rollback) would read as the checkpoint, an older horizon.
        var current = existing is { Length: 2 * SlotSize } && !HoldsVersion3Slot(existing) ? Read(existing, out counter) : null;
        var slot = new byte[SlotSize];
        var next = current is null ? 1 : counter + 1;
        Encode(slot, next);
        if (current is null)
        {
            // A new file (or an older version): written whole aside and renamed, once.
            var whole = new byte[2 * SlotSize];
            slot.CopyTo(whole, next % 2 * SlotSize);
            const string temporary = FileName + ".tmp";
            using (var file = directory.Open(temporary, FileMode.Create))
            {
                Write(file, whole, 0);
                file.Sync();
            }
            directory.Replace(temporary, FileName);
            return;
        }
        using (var file = directory.Open(FileName, FileMode.Open))
        {
            Write(file, slot, next % 2 * SlotSize);
            file.Sync();
        }
    }

    private static bool HoldsVersion3Slot(byte[] file) =>
        BinaryPrimitives.ReadUInt64LittleEndian(file) == MagicV3 || BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(SlotSize)) == MagicV3;

    private static void Write(IDurableFile file, byte[] bytes, long offset)
    {
        try
        {
            file.Write(bytes, offset);
        }
        catch (IOException e)
        {
            BlockThrow.Error(BlockError.Io, $"cannot write the log checkpoint {file.Path}: {e.Message}", e);
        }
    }

    private void Encode(Span<byte> slot, long counter)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(slot, Magic);
        VolumeId.TryWriteBytes(slot[8..24]);
        BinaryPrimitives.WriteInt64LittleEndian(slot[24..], Horizon);
        BinaryPrimitives.WriteInt64LittleEndian(slot[32..], Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(slot[40..], Generation);
        BinaryPrimitives.WriteInt64LittleEndian(slot[48..], StoreLength);
        BinaryPrimitives.WriteInt64LittleEndian(slot[56..], counter);
        BinaryPrimitives.WriteInt64LittleEndian(slot[64..], RestorableFrom);
        BinaryPrimitives.WriteUInt32LittleEndian(slot[72..], Crc32C.Compute(slot[..72]));
    }
}
