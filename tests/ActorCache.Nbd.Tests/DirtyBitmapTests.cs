using System.Buffers.Binary;

namespace ActorCache.Nbd.Tests;

/// <summary>A dirty bitmap's answer to BLOCK_STATUS, table-tested against the ranges it holds.</summary>
public sealed class DirtyBitmapTests
{
    private const uint D = MetaContexts.StateDirty;
    private const long K = 1024;

    // Dirty: [4K, 12K), [1M, 1M+8K) (given as two touching ranges), [3M, 4M); K is a KiB.
    private static readonly DirtyBitmap Bitmap = new("A", MetaContexts.FirstDirtyBitmapId,
        [(4 * K, 8 * K), (1 << 20, 4 * K), ((1 << 20) + 4 * K, 4 * K), (3 << 20, 1 << 20)]);

    private static List<(long Length, uint Flags)> Extents(DirtyBitmap bitmap, long offset, long length, int max = NbdRequest.MaxExtents)
    {
        var bytes = new byte[max * NbdReplyEncoder.ExtentSize];
        var count = bitmap.WriteExtents(bytes, offset, length, max);
        return [.. Enumerable.Range(0, count).Select(i =>
            ((long)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(8 * i)), BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(8 * i + 4))))];
    }

    [Fact]
    public void Extents_alternate_clean_and_dirty_and_stop_at_the_request_end() =>
        Assert.Equal([(4 * K, 0u), (8 * K, D), ((1 << 20) - 12 * K, 0u), (8 * K, D), ((2 << 20) - 8 * K, 0u), (1 << 20, D), (1 << 20, 0u)],
            Extents(Bitmap, 0, 5 << 20));

    [Theory]
    [InlineData(8 * K, K, new long[] { K }, new uint[] { D })]                        // inside a dirty range
    [InlineData(8 * K, 8 * K, new long[] { 4 * K, 4 * K }, new uint[] { D, 0 })]       // from inside one to clean
    [InlineData(12 * K, 4 * K, new long[] { 4 * K }, new uint[] { 0 })]               // just after a range
    [InlineData((1 << 20) + 4 * K, 4 * K, new long[] { 4 * K }, new uint[] { D })]    // the second half of the merged range
    [InlineData(5 << 20, 1 << 20, new long[] { 1 << 20 }, new uint[] { 0 })]          // past every range
    [InlineData((4 << 20) - K, 2 * K, new long[] { K, K }, new uint[] { D, 0 })]      // across the end of the last
    public void A_request_anywhere_gets_the_extents_from_its_own_offset(long offset, long length, long[] lengths, uint[] flags) =>
        Assert.Equal(lengths.Zip(flags).Select(e => (e.First, e.Second)).ToList(), Extents(Bitmap, offset, length));

    [Fact]
    public void At_most_max_extents_are_written()
    {
        Assert.Equal([(4 * K, 0u)], Extents(Bitmap, 0, 5 << 20, max: 1));
        Assert.Equal([(4 * K, 0u), (8 * K, D)], Extents(Bitmap, 0, 5 << 20, max: 2));
    }

    [Fact]
    public void Unsorted_and_overlapping_ranges_are_merged()
    {
        var bitmap = new DirtyBitmap("B", 3, [(8 * K, 4 * K), (0, 2 * K), (K, 2 * K), (10 * K, K), (20 * K, 0)]);
        Assert.Equal(2, bitmap.RangeCount);
        Assert.Equal([(3 * K, D), (5 * K, 0u), (4 * K, D), (4 * K, 0u)], Extents(bitmap, 0, 16 * K));
    }

    [Fact]
    public void No_ranges_is_one_clean_extent() =>
        Assert.Equal([(1L << 30, 0u)], Extents(new DirtyBitmap("C", 2, []), 0, 1 << 30));

    [Fact]
    public void A_reply_for_every_context_fits_the_request_buffer() =>
        Assert.True((1 + MetaContexts.MaxDirtyBitmaps) * NbdReplyEncoder.BlockStatusChunkSize(NbdRequest.MaxExtents)
                    <= NbdRequest.HeaderRoom + NbdRequest.InlinePayload);
}
