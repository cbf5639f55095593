using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ActorCache.Blocks;

/// <summary>
/// CRC32C (Castagnoli), the checksum of every log record and replication frame; hardware-accelerated where the CPU has it
/// (SSE4.2, ARMv8 CRC).
/// </summary>
/// <remarks>
/// The CRC instruction takes three cycles to give its result but can start one every cycle, so one chain of them runs at
/// a third of the unit's speed. Longer inputs are cut into three equal parts whose CRCs run as three independent chains,
/// then joined: the CRC of A then B is the CRC of A shifted over B's length of zero bytes, XOR the CRC of B from a zero
/// state (the CRC is linear). The shift is four table look-ups per join, from tables built once for the two part
/// lengths used (Mark Adler's crc32c.c, the same method as the Linux kernel's and Intel's).
/// </remarks>
public static class Crc32C
{
    private const uint Polynomial = 0x82F63B78; // reflected
    private const int Long = 8192, Short = 256;  // bytes per chain: 24 KiB and 768-byte rounds
    private static readonly uint[] LongShift = ZeroesTable(Long), ShortShift = ZeroesTable(Short);

    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(0xFFFFFFFFu, data);

    /// <summary>Continues a running (not yet inverted) CRC over more data.</summary>
    /// <remarks>
    /// Compiled optimized at once: at tier 0 nothing is inlined (every word would cost three calls), and a node that has just
    /// started, still compiling new methods, puts off moving it to tier 1 for seconds while it checksums everything it logs.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        ref var next = ref MemoryMarshal.GetReference(data);
        var length = data.Length;
        while (length >= 3 * Long)
        {
            crc = ThreeChains(crc, ref next, Long, LongShift);
            next = ref Unsafe.Add(ref next, 3 * Long);
            length -= 3 * Long;
        }
        while (length >= 3 * Short)
        {
            crc = ThreeChains(crc, ref next, Short, ShortShift);
            next = ref Unsafe.Add(ref next, 3 * Short);
            length -= 3 * Short;
        }
        for (; length >= 8; length -= 8, next = ref Unsafe.Add(ref next, 8))
            crc = BitOperations.Crc32C(crc, Unsafe.ReadUnaligned<ulong>(ref next));
        for (; length > 0; length--, next = ref Unsafe.Add(ref next, 1))
            crc = BitOperations.Crc32C(crc, next);
        return crc;
    }

    /// <summary>The CRC continued over 3 x <paramref name="part"/> bytes at <paramref name="at"/>, as three chains joined.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint ThreeChains(uint crc0, ref byte at, int part, uint[] shift)
    {
        uint crc1 = 0, crc2 = 0;
        for (var i = 0; i < part; i += 8)
        {
            crc0 = BitOperations.Crc32C(crc0, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref at, i)));
            crc1 = BitOperations.Crc32C(crc1, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref at, part + i)));
            crc2 = BitOperations.Crc32C(crc2, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref at, 2 * part + i)));
        }
        crc0 = Shift(shift, crc0) ^ crc1;
        return Shift(shift, crc0) ^ crc2;
    }

    /// <summary>A CRC state moved over the table's length of zero bytes: one look-up per byte of the state.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Shift(uint[] table, uint crc) =>
        table[crc & 0xFF] ^ table[256 + ((crc >> 8) & 0xFF)] ^ table[512 + ((crc >> 16) & 0xFF)] ^ table[768 + (crc >> 24)];

    /// <summary>
    /// The operator that runs a CRC state over <paramref name="bytes"/> zero bytes (a power of two), as four tables of 256
    /// (one per byte of the state). Built as a 32x32 matrix over GF(2), squared from one zero bit up.
    /// </summary>
    private static uint[] ZeroesTable(int bytes)
    {
        var odd = new uint[32];
        var even = new uint[32];
        odd[0] = Polynomial; // one zero bit
        for (var n = 1; n < 32; n++) odd[n] = 1u << (n - 1);
        Square(even, odd); // two zero bits
        Square(odd, even); // four
        var length = bytes;
        uint[] op;
        while (true)
        {
            Square(even, odd); // one zero byte first, then doubling
            length >>= 1;
            if (length == 0)
            {
                op = even;
                break;
            }
            Square(odd, even);
            length >>= 1;
            if (length == 0)
            {
                op = odd;
                break;
            }
        }
        var table = new uint[4 * 256];
        for (uint n = 0; n < 256; n++)
        {
            table[n] = Times(op, n);
            table[256 + n] = Times(op, n << 8);
            table[512 + n] = Times(op, n << 16);
            table[768 + n] = Times(op, n << 24);
        }
        return table;
    }

    private static uint Times(uint[] matrix, uint vector)
    {
        uint sum = 0;
        for (var i = 0; vector != 0; i++, vector >>= 1)
            if ((vector & 1) != 0) sum ^= matrix[i];
        return sum;
    }

    private static void Square(uint[] square, uint[] matrix)
    {
        for (var n = 0; n < 32; n++) square[n] = Times(matrix, matrix[n]);
    }
}
