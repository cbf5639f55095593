using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Where recovery starts: everything before <see cref="Horizon"/> is on the backing (destaged and
/// fdatasync'ed), so replay reads only the log from there on. Written atomically (temporary file,
/// fdatasync, rename, directory sync) by the destager each time it advances.
/// <code>
/// offset size field
///   0     8  magic "ACCKPT01"
///   8    16  volume id
///  24     8  horizon: log address of the first batch still needed
///  32     8  sequence number of that batch
///  40     8  generation at the horizon
///  48     4  CRC32C of bytes 0..47
/// </code>
/// </summary>
public sealed record Checkpoint(Guid VolumeId, long Horizon, long Sequence, long Generation)
{
    private const ulong Magic = 0x313054504B434341; // "ACCKPT01"
    private const int Size = 52;
    public const string FileName = "checkpoint";

    public static Checkpoint New() => new(Guid.NewGuid(), 0, 1, 1);

    /// <summary>Reads the checkpoint in <paramref name="directory"/>; null when there is none yet. A damaged one is an error, not a fresh start.</summary>
    public static Checkpoint? Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length != Size || BinaryPrimitives.ReadUInt64LittleEndian(bytes) != Magic ||
            BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(48)) != Crc32C.Compute(bytes.AsSpan(0, 48)))
            throw new BlockTargetException(BlockError.Io,
                $"log checkpoint {path} is damaged; the log cannot be replayed safely. Restore the volume from a replica or snapshot");
        return new Checkpoint(new Guid(bytes.AsSpan(8, 16)),
            BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(24)),
            BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(32)),
            BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(40)));
    }

    public void Save(string directory)
    {
        var bytes = new byte[Size];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, Magic);
        VolumeId.TryWriteBytes(bytes.AsSpan(8, 16));
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(24), Horizon);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(32), Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(40), Generation);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(48), Crc32C.Compute(bytes.AsSpan(0, 48)));
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
