using ActorCache.Blocks;

namespace ActorCache.Blocks.Tests;

public class ByteSizeTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("512K", 512L << 10)]
    [InlineData("512M", 512L << 20)]
    [InlineData("10G", 10L << 30)]
    [InlineData("1T", 1L << 40)]
    [InlineData("1GiB", 1L << 30)]
    [InlineData("64MB", 64L << 20)]
    [InlineData(" 2g ", 2L << 30)]
    public void Parses_sizes_users_write(string text, long expected)
    {
        Assert.True(ByteSize.TryParse(text, out var bytes, out var error), error);
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("0", "greater than zero")]
    [InlineData("-1G", "not a size")]
    [InlineData("1.5G", "not a size")]
    [InlineData("10X", "unknown unit")]
    [InlineData("G", "not a size")]
    [InlineData("99999999999P", "too large")]
    public void Rejects_bad_sizes_with_a_reason(string text, string reason)
    {
        Assert.False(ByteSize.TryParse(text, out _, out var error));
        Assert.Contains(reason, error);
    }

    [Theory]
    [InlineData(1L << 30, "1G")]
    [InlineData(1536L << 20, "1536M")]
    [InlineData(4096L, "4K")]
    [InlineData(1000L, "1000")]
    public void Formats_the_shortest_exact_form(long bytes, string expected) => Assert.Equal(expected, ByteSize.Format(bytes));
}
