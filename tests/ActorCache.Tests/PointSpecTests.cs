using ActorCache.Snapshots;

namespace ActorCache.Tests;

/// <summary>How a point of history is named after an export name's <c>@</c> or in <c>--at</c>; the text may come from any NBD client.</summary>
public sealed class PointSpecTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData("-90s", 90)]
    [InlineData("-5m", 300)]
    [InlineData("-2h", 7200)]
    [InlineData("-1d", 86400)]
    public void A_relative_time_is_that_long_before_now(string text, int seconds)
    {
        Assert.True(PointSpec.TryParse(text, Now, out var query));
        Assert.Equal(Now - TimeSpan.FromSeconds(seconds), query!.Time);
    }

    [Fact]
    public void Generations_and_absolute_times_parse_and_a_snapshot_name_is_neither()
    {
        Assert.True(PointSpec.TryParse("gen:42", Now, out var generation));
        Assert.Equal(42, generation!.Generation);
        Assert.True(PointSpec.TryParse("2026-12-04T10:42:07Z", Now, out var time));
        Assert.Equal(new DateTimeOffset(2026, 12, 4, 10, 42, 7, TimeSpan.Zero), time!.Time);
        Assert.False(PointSpec.TryParse("before-upgrade", Now, out _));
        Assert.False(PointSpec.TryParse("gen:0", Now, out _));
        Assert.False(PointSpec.TryParse("2026-12-04T10:42:07", Now, out _)); // no zone: refused, not read as local time
    }

    [Theory]
    [InlineData("-10000000d")]              // before year 1
    [InlineData("-9999999999999s")]         // more than a TimeSpan holds in ticks
    [InlineData("-99999999999999999999d")]  // more than a long holds
    public void A_relative_time_further_back_than_the_calendar_is_the_earliest_time_not_an_exception(string text)
    {
        Assert.True(PointSpec.TryParse(text, Now, out var query));
        Assert.Equal(DateTimeOffset.MinValue, query!.Time);
    }
}
