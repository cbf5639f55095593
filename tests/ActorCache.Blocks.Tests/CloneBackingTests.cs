using ActorCache.Blocks;

namespace ActorCache.Blocks.Tests;

/// <summary>
/// A thin clone's backing: unwritten blocks read through to the origin, written ones are the clone's,
/// the map says which durably after the data, and an independent clone needs its origin no more.
/// </summary>
public sealed class CloneBackingTests : IDisposable
{
    private const long Size = 64 * 4096;
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-clone-").FullName;
    private string Own => Path.Combine(_dir, "clone.img");
    private string Map => Own + CloneBacking.MapSuffix;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The origin: a file of a known pattern (each block filled with its number + 1).</summary>
    private async Task<FileBacking> OriginAsync()
    {
        var origin = FileBacking.Open(Path.Combine(_dir, "origin.img"), Size, create: true);
        for (var block = 0; block < Size / 4096; block++)
            await origin.WriteAsync(block * 4096L, Enumerable.Repeat((byte)(block + 1), 4096).ToArray(), fua: false);
        return origin;
    }

    private CloneBacking Open(IBlockTarget? origin) => CloneBacking.Open(FileBacking.Open(Own, Size, create: !File.Exists(Own)), origin, Map);

    private static async Task<byte[]> ReadAsync(IBlockTarget target, long offset, int length)
    {
        var buffer = new byte[length];
        await target.ReadAsync(offset, buffer);
        return buffer;
    }

    [Fact]
    public async Task Unwritten_blocks_read_the_origin_and_a_partial_write_keeps_the_rest_of_its_block()
    {
        await using var origin = await OriginAsync();
        await using var clone = Open(origin);
        Assert.Equal(Enumerable.Repeat((byte)4, 4096), await ReadAsync(clone, 3 * 4096, 4096));

        await clone.WriteAsync(3 * 4096 + 100, new byte[] { 0xAA, 0xBB }, fua: false);
        var block = await ReadAsync(clone, 3 * 4096, 4096);
        Assert.Equal(0xAA, block[100]);
        Assert.Equal(0xBB, block[101]);
        Assert.Equal(4, block[99]);
        Assert.Equal(4, block[102]);

        // A range across own and origin blocks reads each from its place; trims read as zeroes.
        await clone.TrimAsync(5 * 4096, 4096, fua: false);
        var range = await ReadAsync(clone, 2 * 4096, 5 * 4096);
        Assert.All(range.AsSpan(0, 4096).ToArray(), b => Assert.Equal(3, b));
        Assert.Equal(0xAA, range[4096 + 100]);
        Assert.All(range.AsSpan(3 * 4096, 4096).ToArray(), b => Assert.Equal(0, b));
        Assert.All(range.AsSpan(4 * 4096, 4096).ToArray(), b => Assert.Equal(7, b));
        Assert.Equal(2, clone.OwnBlocks);
    }

    [Fact]
    public async Task A_flushed_write_is_the_clones_after_a_reopen_and_an_unflushed_map_never_claims_more()
    {
        await using var origin = await OriginAsync();
        await using (var clone = Open(origin))
        {
            await clone.WriteAsync(0, Enumerable.Repeat((byte)0xEE, 4096).ToArray(), fua: true);
        }
        await using var reopened = Open(origin);
        Assert.Equal(Enumerable.Repeat((byte)0xEE, 4096), await ReadAsync(reopened, 0, 4096));
        Assert.Equal(1, reopened.OwnBlocks);
    }

    [Fact]
    public async Task Two_flushes_at_once_never_leave_an_older_map_page_on_disk()
    {
        await using var origin = await OriginAsync();
        var own = new SlowFlush(FileBacking.Open(Own, Size, create: true));
        var clone = CloneBacking.Open(own, origin, Map);
        await clone.WriteAsync(0, new byte[4096], fua: false);
        own.Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = clone.FlushAsync().AsTask(); // took the map page with block 0, waits in the data sync
        await own.Entered.Task;
        own.Hold2 = true;
        await clone.WriteAsync(4096, new byte[4096], fua: false);
        var second = clone.FlushAsync().AsTask(); // the page with blocks 0 and 1
        await Task.Delay(100);
        own.Hold.SetResult();
        await Task.WhenAll(first, second);
        await clone.DisposeAsync();

        // Read the map as a restart would: both blocks are the clone's.
        await using var reopened = Open(origin);
        Assert.Equal(2, reopened.OwnBlocks);
        Assert.Equal(new byte[4096], await ReadAsync(reopened, 4096, 4096));
    }

    [Fact]
    public async Task Made_independent_it_copies_what_it_read_through_keeps_its_own_writes_and_opens_without_origin()
    {
        var origin = await OriginAsync();
        await using (var clone = Open(origin))
        {
            await clone.WriteAsync(10 * 4096, Enumerable.Repeat((byte)0x55, 4096).ToArray(), fua: false);
            var progress = new List<long>();
            await clone.MakeIndependentAsync((done, total) => progress.Add(done), CancellationToken.None);
            Assert.False(clone.HasOrigin);
            Assert.Equal(Size / 4096, progress[^1]);
        }
        Assert.True(CloneBacking.IsIndependent(Map));
        await using var alone = Open(origin: null);
        Assert.Equal(Enumerable.Repeat((byte)10, 4096), await ReadAsync(alone, 9 * 4096, 4096));
        Assert.Equal(Enumerable.Repeat((byte)0x55, 4096), await ReadAsync(alone, 10 * 4096, 4096));
    }

    [Fact]
    public async Task A_torn_header_leaves_the_other_copy_and_a_map_cut_short_at_creation_starts_afresh()
    {
        var origin = await OriginAsync();
        await using (var clone = Open(origin))
            await clone.MakeIndependentAsync((_, _) => { }, CancellationToken.None);
        // Tear the first copy: the second (written first) still says independent.
        await using (var map = File.Open(Map, FileMode.Open))
        {
            map.Position = 20;
            map.WriteByte(0xFF);
        }
        Assert.True(CloneBacking.IsIndependent(Map));
        await using (Open(origin: null))
        {
        }

        // Both torn: damaged, said plainly.
        await using (var map = File.Open(Map, FileMode.Open))
        {
            map.Position = 2048 + 20;
            map.WriteByte(0xFF);
        }
        var error = Assert.Throws<BlockTargetException>(() => CloneBacking.IsIndependent(Map));
        Assert.Contains("damaged header", error.Message);

        // A map that never got its header (a crash while it was created) is a new one.
        File.WriteAllBytes(Map, []);
        Assert.False(CloneBacking.IsIndependent(Map));
        await using var fresh = Open(origin);
        Assert.Equal(0, fresh.OwnBlocks);
    }

    /// <summary>A backing whose FLUSH can be held: the first one waits until released.</summary>
    private sealed class SlowFlush(IBlockTarget below) : ForwardingTarget(below)
    {
        public TaskCompletionSource? Hold;
        public bool Hold2;
        public readonly TaskCompletionSource Entered = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            if (Hold is { } hold && !Hold2)
            {
                Entered.TrySetResult();
                await hold.Task;
            }
            await base.FlushAsync(cancellationToken);
        }
    }
}
