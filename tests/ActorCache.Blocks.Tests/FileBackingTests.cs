using ActorCache.Blocks;

namespace ActorCache.Blocks.Tests;

public sealed class FileBackingTests : IDisposable
{
    private const long Size = 16 << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-backing-").FullName;
    private string PathOf(string name) => Path.Combine(_dir, name);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Fact]
    public async Task Creates_a_sparse_file_of_the_volume_size()
    {
        await using var backing = FileBacking.Open(PathOf("a.img"), Size, create: true);
        Assert.Equal(Size, new FileInfo(PathOf("a.img")).Length);
        var extents = new AllocationExtent[4];
        var n = await backing.GetAllocationAsync(0, Size, extents);
        Assert.Equal(1, n);
        Assert.Equal(new AllocationExtent(Size, AllocationState.Hole | AllocationState.Zero), extents[0]);
    }

    [Fact]
    public async Task Grows_sparsely_keeps_its_data_and_refuses_to_shrink()
    {
        var data = Pattern(64 << 10, 9);
        await using (var backing = FileBacking.Open(PathOf("a.img"), Size, create: true))
        {
            await backing.WriteAsync(Size - data.Length, data, fua: true);
            Assert.True(await backing.TrySendAsync(new GrowTarget(2 * Size)));
            Assert.Equal(2 * Size, backing.Size);
            Assert.Equal(2 * Size, new FileInfo(PathOf("a.img")).Length);
            await backing.WriteAsync(2 * Size - data.Length, data, fua: true); // the new last bytes
            var extents = new AllocationExtent[4];
            Assert.Equal(1, await backing.GetAllocationAsync(Size, Size / 2, extents));
            Assert.Equal(AllocationState.Hole | AllocationState.Zero, extents[0].State); // the new part is a hole

            var shrink = await Assert.ThrowsAsync<BlockTargetException>(async () => await backing.TrySendAsync(new GrowTarget(Size)));
            Assert.Contains("cannot shrink", shrink.Message);
            Assert.Equal(2 * Size, backing.Size);
            Assert.False(await backing.TrySendAsync(new OtherMessage()));
        }
        // A volume of the new size opens it without extending (the length is what was made durable).
        await using var reopened = FileBacking.Open(PathOf("a.img"), 2 * Size, create: false, extend: false);
        var read = new byte[data.Length];
        await reopened.ReadAsync(Size - data.Length, read);
        Assert.Equal(data, read);
        await reopened.ReadAsync(2 * Size - data.Length, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public async Task A_read_only_backing_refuses_to_grow()
    {
        await using (FileBacking.Open(PathOf("a.img"), Size, create: true)) { }
        await using var backing = FileBacking.Open(PathOf("a.img"), Size, create: false, readOnly: true);
        var refused = await Assert.ThrowsAsync<BlockTargetException>(async () => await backing.TrySendAsync(new GrowTarget(2 * Size)));
        Assert.Contains("read-only", refused.Message);
        Assert.Equal(Size, backing.Size);
        Assert.Equal(Size, new FileInfo(PathOf("a.img")).Length);
    }

    private sealed record OtherMessage : TargetMessage;

    [Fact]
    public async Task Reads_back_what_was_written_and_reports_it_as_data()
    {
        await using var backing = FileBacking.Open(PathOf("a.img"), Size, create: true);
        var data = Pattern(64 << 10, 1);
        await backing.WriteAsync(1 << 20, data, fua: true);
        var read = new byte[data.Length];
        await backing.ReadAsync(1 << 20, read);
        Assert.Equal(data, read);

        var extents = new AllocationExtent[8];
        var n = await backing.GetAllocationAsync(0, Size, extents);
        Assert.Equal(3, n);
        Assert.Equal(AllocationState.Hole | AllocationState.Zero, extents[0].State);
        Assert.Equal(1 << 20, extents[0].Length);
        Assert.Equal(AllocationState.Data, extents[1].State);
        Assert.Equal(Size, extents[..n].Sum(e => e.Length));
    }

    [Fact]
    public async Task Trim_punches_a_hole_that_reads_as_zeroes()
    {
        await using var backing = FileBacking.Open(PathOf("a.img"), Size, create: true);
        await backing.WriteAsync(0, Pattern(1 << 20, 2), fua: false);
        await backing.TrimAsync(256 << 10, 512 << 10, fua: false);
        var read = new byte[512 << 10];
        await backing.ReadAsync(256 << 10, read);
        Assert.All(read, b => Assert.Equal(0, b));
        var extents = new AllocationExtent[1];
        Assert.Equal(1, await backing.GetAllocationAsync(256 << 10, 512 << 10, extents));
        Assert.Equal(AllocationState.Hole | AllocationState.Zero, extents[0].State);
    }

    [Fact]
    public async Task Write_zeroes_without_hole_keeps_the_range_allocated()
    {
        await using var backing = FileBacking.Open(PathOf("a.img"), Size, create: true);
        await backing.WriteAsync(0, Pattern(1 << 20, 3), fua: false);
        await backing.WriteZeroesAsync(0, 1 << 20, mayDeallocate: false, fastOnly: false, fua: true);
        var read = new byte[1 << 20];
        await backing.ReadAsync(0, read);
        Assert.All(read, b => Assert.Equal(0, b));
        var extents = new AllocationExtent[1];
        await backing.GetAllocationAsync(0, 1 << 20, extents);
        Assert.Equal(AllocationState.Data, extents[0].State);
    }

    [Fact]
    public async Task Request_one_extent_stops_after_the_first()
    {
        await using var backing = FileBacking.Open(PathOf("a.img"), Size, create: true);
        await backing.WriteAsync(4096, Pattern(4096, 4), fua: false);
        var extents = new AllocationExtent[1];
        Assert.Equal(1, await backing.GetAllocationAsync(0, Size, extents));
        Assert.Equal(4096, extents[0].Length);
    }

    [Fact]
    public void Missing_backing_is_refused_unless_created()
    {
        var e = Assert.Throws<BlockTargetException>(() => FileBacking.Open(PathOf("missing.img"), Size, create: false));
        Assert.Contains("does not exist", e.Message);
        Assert.False(File.Exists(PathOf("missing.img")));
    }

    [Fact]
    public void Unusable_path_gives_a_clear_error_and_creates_nothing()
    {
        var e = Assert.Throws<BlockTargetException>(() => FileBacking.Open(Path.Combine(_dir, "no-such-dir", "x.img"), Size, create: true));
        Assert.Contains("cannot open backing", e.Message);
    }

    [Fact]
    public async Task Existing_smaller_file_is_extended_and_keeps_its_content()
    {
        var data = Pattern(8192, 5);
        await File.WriteAllBytesAsync(PathOf("old.img"), data);
        await using var backing = FileBacking.Open(PathOf("old.img"), Size, create: false);
        Assert.Equal(Size, new FileInfo(PathOf("old.img")).Length);
        var read = new byte[8192];
        await backing.ReadAsync(0, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public async Task Read_only_backing_refuses_writes()
    {
        await File.WriteAllBytesAsync(PathOf("ro.img"), new byte[Size]);
        await using var backing = FileBacking.Open(PathOf("ro.img"), Size, create: false, readOnly: true);
        Assert.True(backing.Capabilities.HasFlag(TargetCapabilities.ReadOnly));
        var e = await Assert.ThrowsAsync<BlockTargetException>(async () => await backing.WriteAsync(0, new byte[4096], fua: false));
        Assert.Equal(BlockError.ReadOnly, e.Error);
    }

    [Fact]
    public async Task Full_file_system_is_reported_as_no_space()
    {
        // /dev/full fails every write with ENOSPC, the way a full disk does.
        if (!File.Exists("/dev/full")) return;
        var e = Assert.Throws<BlockTargetException>(() =>
        {
            using var handle = File.OpenHandle("/dev/full", FileMode.Open, FileAccess.Write);
            try { RandomAccess.Write(handle, new byte[4096], 0); }
            catch (IOException io) { BlockThrow.FromErrno(io.HResult, "write", "/dev/full"); }
        });
        Assert.Equal(BlockError.NoSpace, e.Error);
        await Task.CompletedTask;
    }

    [Fact]
    public async Task Takes_a_range_from_another_file_inside_the_kernel()
    {
        // What the destager does with a log segment: the bytes land where a write would put them.
        var source = PathOf("segment.log");
        var content = Pattern(1 << 20, 3);
        await File.WriteAllBytesAsync(source, content);
        await using var backing = FileBacking.Open(PathOf("a.img"), Size, create: true);
        using (var handle = File.OpenHandle(source))
            Assert.True(backing.TryCopyFrom(handle, 8192, 5 << 20, 64 << 10), "copy_file_range between two files of one file system");
        var back = new byte[64 << 10];
        await backing.ReadAsync(5 << 20, back);
        Assert.Equal(content.AsSpan(8192, 64 << 10).ToArray(), back);
        var before = new byte[4096];
        await backing.ReadAsync((5 << 20) - 4096, before);
        Assert.True(before.AsSpan().IndexOfAnyExcept((byte)0) < 0, "nothing else is written");
    }
}
