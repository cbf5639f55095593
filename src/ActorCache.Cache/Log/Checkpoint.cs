using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Where recovery starts: everything before <see cref="Horizon"/> is on the backing (destaged and
/// fdatasync'ed), so replay reads only the log from there on. Written atomically (temporary file,
/// fdatasync, rename, directory sync) by the destager each time it advances. Version 2 adds how long
/// the snapshot store was when the step was complete: records past that were written after it and are
/// checked in full when the volume opens (a torn one is cut off; it was never needed yet).
/// <code>
/// offset size field
///   0     8  magic "ACCKPT02" ("ACCKPT01": version 1, 52 bytes, without the store length)
///   8    16  volume id
///  24     8  horizon: log address of the first batch still needed
///  32     8  sequence number of that batch
///  40     8  generation at the horizon
///  48     8  snapshot store length (version 2)
///  56     4  CRC32C of the bytes before it
/// </code>
/// </summary>
public sealed record Checkpoint(Guid VolumeId, long Horizon, long Sequence, long Generation, long StoreLength = 0)
{
    private const ulong MagicV1 = 0x313054504B434341; // "ACCKPT01"
    private const ulong Magic = 0x323054504B434341; // "ACCKPT02"
    private const int SizeV1 = 52;
    private const int Size = 60;
    public const string FileName = "checkpoint";

    public static Checkpoint New() => new(Guid.NewGuid(), 0, 1, 1);

    /// <summary>Reads the checkpoint in <paramref name="directory"/>; null when there is none yet. A damaged one is an error, not a fresh start.</summary>
    public static Checkpoint? Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        var bytes = File.ReadAllBytes(path);
        var v1 = bytes.Length == SizeV1 && BinaryPrimitives.ReadUInt64LittleEndian(bytes) == MagicV1;
        var v2 = bytes.Length == Size && BinaryPrimitives.ReadUInt64LittleEndian(bytes) == Magic;
        var crcAt = bytes.Length - 4;
        if (!(v1 || v2) || BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(crcAt)) != Crc32C.Compute(bytes.AsSpan(0, crcAt)))
            throw new BlockTargetException(BlockError.Io,
                $"log checkpoint {path} is damaged; the log cannot be replayed safely. Restore the volume from a replica or snapshot");
        return new Checkpoint(new Guid(bytes.AsSpan(8, 16)),
            BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(24)),
            BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(32)),
            BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(40)),
            v2 ? BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(48)) : 0);
    }

    public void Save(string directory)
    {
        var bytes = new byte[Size];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, Magic);
        VolumeId.TryWriteBytes(bytes.AsSpan(8, 16));
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(24), Horizon);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(32), Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(40), Generation);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(48), StoreLength);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(56), Crc32C.Compute(bytes.AsSpan(0, 56)));
        var temporary = Path.Combine(directory, FileName + ".tmp");
        using (var handle = File.OpenHandle(temporary, FileMode.Create, FileAccess.Write))
        {
            RandomAccess.Write(handle, bytes, 0);
            var errno = LibC.DataSync(handle);
            if (errno != 0) BlockThrow.FromErrno(errno, "fdatasync", temporary);
        }
        File.Move(temporary, Path.Combine(directory, FileName), overwrite: true);
        var dirErrno = LibC.SyncDirectory(directory);
        if (dirErrno != 0) BlockThrow.FromErrno(dirErrno, "fsync", directory);
    }
}
