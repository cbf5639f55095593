using ActorCache.Blocks;

namespace ActorCache.Blocks.Tests;

/// <summary>
/// The three-chain CRC32C against a plain bit-at-a-time one: every length around the points where it changes method
/// (8-byte words, 768-byte and 24 KiB rounds), at every alignment, and continued in pieces; the on-disk log depends on it.
/// </summary>
public class Crc32CTests
{
    private static uint BitByBit(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        return crc;
    }

    private static readonly byte[] Data = RandomBytes(200_000);

    private static byte[] RandomBytes(int n)
    {
        var bytes = new byte[n];
        new Random(7).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public void Known_values()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0u, Crc32C.Compute([]));
        // RFC 3720 (iSCSI) B.4: 32 bytes of zeroes, of 0xFF, ascending.
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    public void Matches_a_bitwise_crc_at_every_length_where_the_method_changes(int alignment)
    {
        int[] edges = [0, 8, 768, 3 * 8192, 2 * 3 * 8192, 4096, 65536, 1 << 17];
        foreach (var edge in edges)
            for (var length = Math.Max(0, edge - 9); length <= edge + 9; length++)
            {
                var span = Data.AsSpan(alignment, length);
                Assert.Equal(~BitByBit(0xFFFFFFFFu, span), Crc32C.Compute(span));
            }
    }

    [Fact]
    public void Continued_in_pieces_equals_all_at_once()
    {
        var random = new Random(11);
        for (var round = 0; round < 200; round++)
        {
            var length = random.Next(0, Data.Length - 8);
            var cut = random.Next(0, length + 1);
            var whole = Crc32C.Compute(Data.AsSpan(0, length));
            var state = Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, Data.AsSpan(0, cut)), Data.AsSpan(cut, length - cut));
            Assert.Equal(whole, ~state);
            Assert.Equal(~BitByBit(0xFFFFFFFFu, Data.AsSpan(0, length)), whole);
        }
    }
}
