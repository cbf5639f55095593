using System.Numerics;
using System.Runtime.InteropServices;

namespace ActorCache.Blocks;

/// <summary>CRC32C (Castagnoli), the checksum of every log record; hardware-accelerated where the CPU has it (SSE4.2, ARMv8 CRC).</summary>
public static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(0xFFFFFFFFu, data);

    /// <summary>Continues a running (not yet inverted) CRC over more data.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (var word in words) crc = BitOperations.Crc32C(crc, word);
        foreach (var b in data[(words.Length * 8)..]) crc = BitOperations.Crc32C(crc, b);
        return crc;
    }
}
