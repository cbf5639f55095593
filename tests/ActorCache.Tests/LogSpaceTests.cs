using ActorCache.Hosting;

namespace ActorCache.Tests;

public sealed class LogSpaceTests
{
    private const long M = 1L << 20, G = 1L << 30;

    [Fact]
    public void Volumes_share_what_the_file_system_can_hold_in_whole_segments_up_to_the_capacity_asked()
    {
        var shares = LogSpace.Share(["a", "b"], new() { ["a"] = 0, ["b"] = 0 }, 1000 * M, 2 * G, 64 * M);
        Assert.Equal(448 * M, shares["a"]);
        Assert.Equal(448 * M, shares["b"]);

        var plenty = LogSpace.Share(["a"], new() { ["a"] = 0 }, 100 * G, 2 * G, 64 * M);
        Assert.Equal(2 * G, plenty["a"]);
    }

    [Fact]
    public void A_log_that_already_holds_more_than_its_share_keeps_it_and_the_others_share_the_rest()
    {
        // a holds 900M of history it has not destaged; 300M are free.
        var shares = LogSpace.Share(["a", "b"], new() { ["a"] = 900 * M, ["b"] = 0 }, 1200 * M, 2 * G, 64 * M);
        Assert.Equal(960 * M, shares["a"]);
        Assert.Equal(192 * M, shares["b"]);
    }
}
