using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Cache.Actors;
using ActorCache.Volumes;
using Microsoft.Extensions.Logging.Abstractions;
using Akka.Actor;
using Akka.TestKit.Xunit2;

namespace ActorCache.Tests;

public sealed class VolumeActorTests() : TestKit(CacheDispatchers.Hocon)
{
    // An open creates a whole write-back cache (log segments, actors), a close flushes it, and other answers wait behind them
    // in the actor's mailbox: TestKit's default 3 s is short on a busy machine, so every expectation here waits this long.
    private static readonly TimeSpan OpenTimeout = TimeSpan.FromSeconds(15);

    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-volume-").FullName;

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) Directory.Delete(_dir, recursive: true);
    }

    private static Task<Volume> Open(VolumeDefinition d, IActorRefFactory _) =>
        Task.FromResult(new Volume(d, FileBacking.Open(d.BackingPath, d.Size, create: false, d.ReadOnly)));

    [Fact]
    public async Task Opens_publishes_and_on_stop_withdraws_its_volume()
    {
        var path = Path.Combine(_dir, "v.img");
        await File.WriteAllBytesAsync(path, []);
        var catalog = new ExportCatalog("");
        var definition = new VolumeDefinition("v", 1 << 20, VolumeMode.PassThrough, path, false, false);
        var actor = Sys.ActorOf(VolumeActor.Props(definition, catalog, Open));
        actor.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        Assert.True(catalog.TryGet("", out var export)); // the only volume is the default export
        Assert.Equal("v", export.Name);

        await export.Target.WriteAsync(0, new byte[4096], fua: false);
        await export.Target.FlushAsync();
        actor.Tell(GetVolumeStatus.Instance);
        var status = ExpectMsg<VolumeStatus>(OpenTimeout);
        Assert.True(status.Online);
        Assert.Equal(0, status.Generation); // generations are the log's: a pass-through volume has none

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
        Assert.Contains("does not exist", ExpectMsg<VolumeOpenFailed>(OpenTimeout).Reason);
    }

    [Fact]
    public void A_volume_that_cannot_open_stays_offline_with_its_reason_for_status_and_clients()
    {
        var definition = new VolumeDefinition("gone", 1 << 20, VolumeMode.PassThrough, Path.Combine(_dir, "gone.img"), true, false);
        var catalog = new ExportCatalog("");
        var actor = Sys.ActorOf(VolumeActor.Props(definition, catalog, Open));
        actor.Tell(OpenVolume.Instance);
        var reason = ExpectMsg<VolumeOpenFailed>(OpenTimeout).Reason;
        actor.Tell(GetVolumeStatus.Instance);
        var status = ExpectMsg<VolumeStatus>(OpenTimeout);
        Assert.False(status.Online);
        Assert.Equal(reason, status.Offline);
        Assert.False(catalog.TryGet("gone", out _));
        Assert.Equal($"volume gone is offline: {reason}", catalog.WhyUnavailable("gone"));
        Assert.Equal($"volume gone is offline: {reason}", catalog.WhyUnavailable("")); // the only volume is the default export, offline or not
        actor.Tell(CloseVolume.Instance);
        Assert.True(ExpectMsg<VolumeClosed>(OpenTimeout).IsDurable); // nothing was open, nothing was lost
    }

    [Fact]
    public async Task Closing_answers_whether_every_acknowledged_write_is_durable()
    {
        var path = Path.Combine(_dir, "f.img");
        await File.WriteAllBytesAsync(path, []);
        FaultyTarget? faulty = null;
        Task<Volume> OpenFaulty(VolumeDefinition d, IActorRefFactory _) =>
            Task.FromResult(new Volume(d, faulty = new FaultyTarget(FileBacking.Open(d.BackingPath, d.Size, create: false))));

        var healthy = Sys.ActorOf(VolumeActor.Props(new VolumeDefinition("ok", 1 << 20, VolumeMode.PassThrough, path, false, false), new ExportCatalog(""), OpenFaulty));
        healthy.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        healthy.Tell(CloseVolume.Instance);
        Assert.Equal(new VolumeClosed("ok", 0, null), ExpectMsg<VolumeClosed>(OpenTimeout));

        var failing = Sys.ActorOf(VolumeActor.Props(new VolumeDefinition("bad", 1 << 20, VolumeMode.PassThrough, path, false, false), new ExportCatalog(""), OpenFaulty));
        failing.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        faulty!.FailWrites = true; // the final flush cannot reach the disk
        Watch(failing);
        failing.Tell(CloseVolume.Instance);
        var closed = ExpectMsg<VolumeClosed>(OpenTimeout);
        Assert.False(closed.IsDurable);
        Assert.Equal(VolumeClosed.UnknownBytes, closed.NotDurableBytes);
        Assert.Contains("injected I/O error", closed.Reason);
        ExpectTerminated(failing);
    }

    private static readonly RingBuffer Ring = new(64L << 20);

    private Task<Volume> OpenWriteBack(VolumeDefinition d, IActorRefFactory actors)
    {
        var options = new CacheOptions
        {
            LogDirectory = Path.Combine(_dir, "log"),
            SegmentSize = 4 << 20,
            MaxBatchBlocks = 256,
            LogCapacity = 64 << 20,
            RetentionTime = TimeSpan.Zero, // destage as soon as history is durable
            DestageInterval = TimeSpan.FromMilliseconds(20),
        };
        var cache = WriteBackCache.Open(d.Name, FileBacking.Open(d.BackingPath, d.Size, create: false), Ring, options, CacheMode.WriteBack,
            NullLogger.Instance, actors);
        return Task.FromResult(new Volume(d, cache));
    }

    private async Task<IActorRef?> FindAsync(string path) =>
        (await Sys.ActorSelection(path).Ask<ActorIdentity>(new Identify(path), TimeSpan.FromSeconds(3))).Subject;

    [Fact]
    public async Task A_write_back_volume_runs_its_flusher_and_destager_as_children_and_closes_durably()
    {
        var path = Path.Combine(_dir, "wb.img");
        var definition = new VolumeDefinition("wb", 16 << 20, VolumeMode.WriteBack, path, true, false);
        await using (FileBacking.Open(path, definition.Size, create: true)) { }
        var catalog = new ExportCatalog("");
        var actor = Sys.ActorOf(VolumeActor.Props(definition, catalog, OpenWriteBack), "volume-wb");
        actor.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        Assert.NotNull(await FindAsync("/user/volume-wb/flusher-wb-*"));
        Assert.NotNull(await FindAsync("/user/volume-wb/destager-wb-*"));

        // Two extents' worth of data: once it is durable the destager moves it to the backing.
        var data = new byte[8 << 20];
        new Random(7).NextBytes(data);
        Assert.True(catalog.TryGet("wb", out var export));
        await export.Target.WriteAsync(0, data, fua: false);
        await export.Target.FlushAsync();
        var volume = (Volume)export.Target;
        await AwaitConditionAsync(() => Task.FromResult(volume.Status().Find<CacheStatistics>()!.BlocksDestaged >= 2048), TimeSpan.FromSeconds(20));

        var tail = new byte[4096];
        Array.Fill(tail, (byte)0x5A);
        await export.Target.WriteAsync(12 << 20, tail, fua: false); // acknowledged, not flushed: closing flushes it
        Assert.True(await actor.GracefulStop(TimeSpan.FromSeconds(30), CloseVolume.Instance));
        Assert.False(catalog.TryGet("wb", out _));

        var reopened = Sys.ActorOf(VolumeActor.Props(definition, catalog, OpenWriteBack), "volume-wb-again");
        reopened.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        Assert.True(catalog.TryGet("wb", out export));
        var read = new byte[data.Length];
        await export.Target.ReadAsync(0, read);
        Assert.Equal(data, read);
        var readTail = new byte[4096];
        await export.Target.ReadAsync(12 << 20, readTail);
        Assert.Equal(tail, readTail);
        Assert.True(await reopened.GracefulStop(TimeSpan.FromSeconds(30), CloseVolume.Instance));
    }
    [Fact]
    public async Task Grows_a_live_volume_publishes_the_new_size_and_refuses_to_shrink()
    {
        var path = Path.Combine(_dir, "g.img");
        var definition = new VolumeDefinition("g", 16 << 20, VolumeMode.WriteBack, path, true, false);
        await using (FileBacking.Open(path, definition.Size, create: true)) { }
        var catalog = new ExportCatalog("");
        var actor = Sys.ActorOf(VolumeActor.Props(definition, catalog, OpenWriteBack));
        actor.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        Assert.True(catalog.TryGet("g", out var before));
        var data = new byte[1 << 20];
        new Random(3).NextBytes(data);
        await before.Target.WriteAsync(15 << 20, data, fua: false);

        actor.Tell(new GrowVolume(48 << 20));
        Assert.Equal(new VolumeGrown("g", 48 << 20), ExpectMsg<VolumeGrown>(TimeSpan.FromSeconds(10)));
        Assert.True(catalog.TryGet("g", out var after));
        Assert.Equal(48 << 20, after.Target.Size); // what a new connection negotiates
        Assert.Contains("48M", after.Description);
        Assert.Equal(48 << 20, new FileInfo(path).Length);
        await after.Target.WriteAsync(47 << 20, data, fua: true); // the new last MiB
        var read = new byte[data.Length];
        await after.Target.ReadAsync(15 << 20, read);
        Assert.Equal(data, read);
        await after.Target.ReadAsync(47 << 20, read);
        Assert.Equal(data, read);
        actor.Tell(GetVolumeStatus.Instance);
        Assert.Equal(48 << 20, ExpectMsg<VolumeStatus>(OpenTimeout).Definition.Size);

        actor.Tell(new GrowVolume(32 << 20));
        Assert.Contains("shrinking is refused", ExpectMsg<VolumeGrowRejected>(OpenTimeout).Reason);
        actor.Tell(new GrowVolume(48 << 20));
        ExpectMsg<VolumeGrown>(OpenTimeout); // the size it has: nothing to do
        Assert.True(await actor.GracefulStop(TimeSpan.FromSeconds(30), CloseVolume.Instance));
    }

    [Fact]
    public async Task A_volume_that_cannot_grow_keeps_its_size_and_says_why()
    {
        var path = Path.Combine(_dir, "ro.img");
        await File.WriteAllBytesAsync(path, new byte[1 << 20]);
        var catalog = new ExportCatalog("");
        var actor = Sys.ActorOf(VolumeActor.Props(new VolumeDefinition("ro", 1 << 20, VolumeMode.PassThrough, path, false, true), catalog, Open));
        actor.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        actor.Tell(new GrowVolume(2 << 20));
        Assert.Contains("read-only", ExpectMsg<VolumeGrowRejected>(OpenTimeout).Reason);
        Assert.Equal(1 << 20, new FileInfo(path).Length);
        Assert.True(catalog.TryGet("ro", out var export));
        Assert.Equal(1 << 20, export.Target.Size);
        Assert.True(await actor.GracefulStop(TimeSpan.FromSeconds(30), CloseVolume.Instance));
    }

    /// <summary>
    /// Leaving write-back drains the log to a slow backing: the actor answers status meanwhile (saying
    /// where it is switching to), and a close that arrives during the switch waits for it.
    /// </summary>
    [Fact]
    public async Task A_mode_switch_drains_off_the_mailbox_status_answers_and_a_close_waits_for_it()
    {
        var path = Path.Combine(_dir, "m.img");
        var definition = new VolumeDefinition("m", 16 << 20, VolumeMode.WriteBack, path, true, false);
        await using (FileBacking.Open(path, definition.Size, create: true)) { }
        Task<Volume> OpenSlow(VolumeDefinition d, IActorRefFactory actors)
        {
            var options = new CacheOptions
            {
                LogDirectory = Path.Combine(_dir, "log-m"),
                SegmentSize = 4 << 20,
                MaxBatchBlocks = 256,
                LogCapacity = 64 << 20,
                RetentionTime = TimeSpan.FromHours(1), // nothing is destaged until the switch drains it
            };
            var backing = new DelayedTarget(FileBacking.Open(d.BackingPath, d.Size, create: false), TimeSpan.FromMilliseconds(300));
            return Task.FromResult(new Volume(d, WriteBackCache.Open(d.Name, backing, Ring, options, CacheMode.WriteBack, NullLogger.Instance, actors)));
        }
        var catalog = new ExportCatalog("");
        var actor = Sys.ActorOf(VolumeActor.Props(definition, catalog, OpenSlow));
        actor.Tell(OpenVolume.Instance);
        ExpectMsg<VolumeOpened>(OpenTimeout);
        Assert.True(catalog.TryGet("m", out var export));
        var data = new byte[12 << 20]; // three extents, several slow backing writes each
        new Random(5).NextBytes(data);
        await export.Target.WriteAsync(0, data, fua: true);

        var switcher = CreateTestProbe();
        actor.Tell(new SetVolumeMode(VolumeMode.WriteThrough), switcher);
        actor.Tell(GetVolumeStatus.Instance);
        var during = ExpectMsg<VolumeStatus>(TimeSpan.FromSeconds(10)); // answered while the drain runs (its blocks still cached, below)
        Assert.Equal(VolumeMode.WriteThrough, during.SwitchingTo);
        Assert.Equal(VolumeMode.WriteBack, during.Definition.Mode);
        Assert.True(during.Cache!.CachedBlocks > 0, "the drain has not finished yet");
        var closer = CreateTestProbe();
        actor.Tell(CloseVolume.Instance, closer);
        closer.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // kept until the switch is done

        Assert.Equal(new VolumeModeSet("m", VolumeMode.WriteThrough), switcher.ExpectMsg<VolumeModeSet>(TimeSpan.FromSeconds(30)));
        Assert.True(closer.ExpectMsg<VolumeClosed>(TimeSpan.FromSeconds(30)).IsDurable);
        await using var raw = FileBacking.Open(path, definition.Size, create: false, readOnly: true);
        var read = new byte[data.Length];
        await raw.ReadAsync(0, read);
        Assert.Equal(data, read); // drained to the backing before the switch was reported
    }
}
