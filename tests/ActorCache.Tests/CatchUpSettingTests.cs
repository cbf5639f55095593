using ActorCache.Configuration;
using ActorCache.Hosting;

namespace ActorCache.Tests;

/// <summary>actorcache.replication.catch-up-ratio: when a returning peer is caught up from the log rather than resynced.</summary>
public sealed class CatchUpSettingTests
{
    private static NodeSettings Load(params string[] sets) => NodeSettingsLoader.Load(new ServeFlags(null, "/tmp/ac-settings", [], [], sets, null, null, null, null));

    [Theory]
    [InlineData(null, 1.25)]
    [InlineData("0", 0.0)]
    [InlineData("4", 4.0)]
    public void The_ratio_is_read_and_defaults_to_one_and_a_quarter(string? value, double expected) =>
        Assert.Equal(expected, Load(value is null ? [] : [$"actorcache.replication.catch-up-ratio = {value}"]).Replication.CatchUpRatio);

    [Theory]
    [InlineData("-1")]
    [InlineData("lots")]
    [InlineData("1000")]
    [InlineData("NaN")]
    public void A_ratio_that_is_no_number_from_0_to_100_is_refused(string value)
    {
        var e = Assert.Throws<SettingsException>(() => Load($"actorcache.replication.catch-up-ratio = {value}"));
        Assert.Contains("use a number from 0 (always resync) to 100", e.Message);
    }
}
