using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>An expiry is on disk before it counts: a save that fails leaves the point out, so the step's retry records it again.</summary>
public sealed class ExpiredPointsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("expired-points-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The first save of the file fails once (ENOSPC on the log's file system).</summary>
    private sealed class FailOnce(ILogDirectory inner) : WrappedDirectory(inner)
    {
        public bool Armed = true;

        public override IDurableFile Open(string name, FileMode mode)
        {
            if (Armed && name == ExpiredPoints.FileName + ".tmp")
            {
                Armed = false;
                throw new IOException("injected: no space left on device");
            }
            return base.Open(name, mode);
        }
    }

    [Fact]
    public void A_point_recorded_again_after_a_failed_save_is_on_disk()
    {
        var expiries = ExpiredPoints.Load(new FailOnce(new LogDirectory(_dir)));
        Assert.Throws<BlockTargetException>(() => expiries.Record(42));
        expiries.Record(42); // the destager's retry expires the same oldest point again
        Assert.Equal([42L], ExpiredPoints.Load(new LogDirectory(_dir)).Points);
    }

    [Fact]
    public void Points_the_host_no_longer_names_kept_are_forgotten_and_the_rest_reported()
    {
        var expiries = ExpiredPoints.Load(new LogDirectory(_dir));
        expiries.Record(7);
        expiries.Record(9);
        var reopened = ExpiredPoints.Load(new LogDirectory(_dir));
        Assert.Equal([3L], reopened.Sift([3, 9], out var expired));
        Assert.Equal([9L], expired);
        Assert.Equal([9L], ExpiredPoints.Load(new LogDirectory(_dir)).Points);
    }
}
