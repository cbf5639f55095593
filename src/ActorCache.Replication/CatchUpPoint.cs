using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Replication;

/// <summary>
/// Where a peer stood in this node's log when the link last stopped cleanly, so that a catch-up from the log still works
/// after a restart of the primary (a peer away across it gets the batches it missed, not a resync of their blocks).
/// Written beside the out-of-sync bitmap just before its clean save, and only trusted together with a clean bitmap that
/// accounts for the same last batch (<see cref="LastSequence"/>): after a crash the bitmap is dirty and the point says nothing.
/// </summary>
/// <param name="BitmapChecksum">The bitmap's bits as saved with it (<see cref="OutOfSyncBitmap.Checksum"/>): a point left over from an
/// older stop (its deletion failed) never matches a bitmap that changed since, by a verify's marks for one.</param>
/// <param name="LastSequence">The newest batch the bitmap accounts for (it must match the bitmap's).</param>
/// <param name="OrderedThrough">The peer holds every batch through this one.</param>
/// <param name="OrderedQueued">The newest batch any ordered session queued for the peer (it may have applied up to it).</param>
/// <param name="TailAddress">A batch at or before the first one the peer lacks, in the log (-1: the first batch marked since).</param>
/// <param name="MarkStartAddress">The first batch marked since the link last streamed live (-1: none).</param>
/// <param name="LastBatchEnd">The log address past the last batch published to the link.</param>
internal sealed record CatchUpPoint(Guid VolumeId, uint BitmapChecksum, long LastSequence, long OrderedThrough, long OrderedQueued, long TailAddress, long TailSequence,
    long MarkStartAddress, long MarkStartSequence, long LastBatchEnd)
{
    public const string FileName = "catch-up.point";
    private const ulong Magic = 0x31545043434F4341; // "ACOCCPT1" little-endian
    private const int Size = 8 + 16 + 4 + 8 * 8 + 4;

    /// <summary>Layout, little-endian: magic (8), volume id (16), bitmap checksum (4), the eight positions in declaration order (8 each), CRC32C of what precedes (4).</summary>
    public void Save(string directory)
    {
        Span<byte> content = stackalloc byte[Size];
        BinaryPrimitives.WriteUInt64LittleEndian(content, Magic);
        VolumeId.TryWriteBytes(content[8..24]);
        BinaryPrimitives.WriteUInt32LittleEndian(content[24..], BitmapChecksum);
        var at = 28;
        foreach (var value in (ReadOnlySpan<long>)[LastSequence, OrderedThrough, OrderedQueued, TailAddress, TailSequence, MarkStartAddress, MarkStartSequence, LastBatchEnd])
        {
            BinaryPrimitives.WriteInt64LittleEndian(content[at..], value);
            at += 8;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(content[at..], Crc32C.Compute(content[..at]));
        AtomicFile.Replace(Path.Combine(directory, FileName), content);
    }

    /// <summary>The saved point, or null when there is none or it is damaged (then the peer is resynced, as without one).</summary>
    public static CatchUpPoint? Load(string directory)
    {
        byte[] content;
        try
        {
            content = File.ReadAllBytes(Path.Combine(directory, FileName));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // none, or unreadable: the peer is resynced
        }
        if (content.Length != Size || BinaryPrimitives.ReadUInt64LittleEndian(content) != Magic ||
            BinaryPrimitives.ReadUInt32LittleEndian(content.AsSpan(Size - 4)) != Crc32C.Compute(content.AsSpan(0, Size - 4)))
            return null;
        long At(int i) => BinaryPrimitives.ReadInt64LittleEndian(content.AsSpan(28 + 8 * i));
        return new CatchUpPoint(new Guid(content.AsSpan(8, 16)), BinaryPrimitives.ReadUInt32LittleEndian(content.AsSpan(24)), At(0), At(1), At(2), At(3), At(4), At(5), At(6), At(7));
    }

    /// <summary>Removes the saved point (a start takes it; what the link stops with next says again where the peer stands).</summary>
    public static void Delete(string directory) => File.Delete(Path.Combine(directory, FileName));
}
