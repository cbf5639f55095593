using ActorCache.Volumes;
using Akka.Actor;
using Akka.TestKit.Xunit2;

namespace ActorCache.Tests;

public sealed class VolumeActorTests : TestKit
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-volume-").FullName;

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) Directory.Delete(_dir, recursive: true);
    }

    private static Volume Open(VolumeDefinition d) =>
        new(d, ActorCache.Blocks.FileBacking.Open(d.BackingPath, d.Size, create: false, d.ReadOnly), cache: null);

    [Fact]
    public async Task Opens_publishes_and_on_stop_withdraws_its_volume()
    {
        var path = Path.Combine(_dir, "v.img");
        await File.WriteAllBytesAsync(path, []);
        var catalog = new ExportCatalog("");
        var definition = new VolumeDefinition("v", 1 << 20, VolumeMode.PassThrough, path, false, false);
        var actor = Sys.ActorOf(VolumeActor.Props(definition, catalog, Open));
        actor.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>();
        Assert.True(catalog.TryGet("", out var export)); // the only volume is the default export
        Assert.Equal("v", export.Name);

        await export.Target.WriteAsync(0, new byte[4096], fua: false);
        await export.Target.FlushAsync();
        actor.Tell(GetVolumeStatus.Instance);
        var status = ExpectMsg<VolumeStatus>();
        Assert.True(status.Online);
        Assert.Equal(1, status.Generation);

        Watch(actor);
        Sys.Stop(actor);
        ExpectTerminated(actor);
        Assert.False(catalog.TryGet("v", out _));
    }

    [Fact]
    public void Missing_backing_is_reported_not_thrown()
    {
        var definition = new VolumeDefinition("gone", 1 << 20, VolumeMode.PassThrough, Path.Combine(_dir, "gone.img"), true, false);
        var actor = Sys.ActorOf(VolumeActor.Props(definition, new ExportCatalog(""), Open));
        actor.Tell(OpenVolume.Instance);
        Assert.Contains("does not exist", ExpectMsg<VolumeOpenFailed>().Reason);
    }
}
