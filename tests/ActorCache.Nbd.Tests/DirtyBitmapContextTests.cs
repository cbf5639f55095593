using ActorCache.Blocks;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Nbd.Tests;

/// <summary>
/// <c>qemu:dirty-bitmap:NAME</c> beside <c>base:allocation</c>, against a catalog whose bitmaps a test
/// sets: what LIST offers, what SET selects (and ignores), when the ranges are taken, and BLOCK_STATUS
/// with one chunk per selected context.
/// </summary>
public sealed class DirtyBitmapContextTests : IAsyncLifetime
{
    private const long Size = 8 << 20;
    private const uint D = MetaContexts.StateDirty;
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-bitmap-").FullName;
    private readonly Catalog _catalog = new();
    private FileBacking _backing = null!;
    private NbdServer _server = null!;
    private string Socket => Path.Combine(_dir, "nbd.sock");

    /// <summary>Two exports; bitmaps by name with the ranges they answer now; "stale" is known but cannot be served.</summary>
    private sealed class Catalog : INbdExportCatalog
    {
        public readonly List<NbdExport> Exports = [];
        public readonly Dictionary<string, (long Offset, long Length)[]> Bitmaps = new(StringComparer.Ordinal);
        public int Asked;

        public bool TryGet(string name, out NbdExport export)
        {
            export = Exports.FirstOrDefault(e => e.Name == (name.Length == 0 ? Exports[0].Name : name))!;
            return export is not null;
        }

        public IReadOnlyList<NbdExport> List() => Exports;

        public ValueTask<IReadOnlyList<(long Offset, long Length)>?> DirtyRangesAsync(NbdExport export, string bitmap, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Asked);
            if (bitmap == "stale") throw new NbdProtocolException("generation 3 is not restorable");
            lock (Bitmaps)
                return ValueTask.FromResult<IReadOnlyList<(long Offset, long Length)>?>(
                    export.Name == "vol0" && Bitmaps.TryGetValue(bitmap, out var ranges) ? ranges : null);
        }

        public IReadOnlyList<string> DirtyBitmaps(NbdExport export) => export.Name == "vol0" ? ["A", "B"] : [];
    }

    public Task InitializeAsync()
    {
        _backing = FileBacking.Open(Path.Combine(_dir, "vol0.img"), Size, create: true);
        _catalog.Exports.Add(new NbdExport("vol0", "the volume", _backing, false));
        _catalog.Exports.Add(new NbdExport("other", "another volume", _backing, true));
        _catalog.Bitmaps["A"] = [(16 << 10, 8 << 10), (1 << 20, 64 << 10)];
        _catalog.Bitmaps["B"] = [];
        _catalog.Bitmaps["gen:7"] = [(0, 4096)];
        _server = TestServer.Start(_catalog, Socket);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _backing.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<RawNbdClient> ConnectStructuredAsync()
    {
        var client = await RawNbdClient.ConnectAsync(Socket);
        await client.StartAsync();
        await client.SendOptionAsync(NbdOption.StructuredReply, []);
        Assert.Equal(OptionReply.Ack, (await client.ReadOptionReplyAsync()).Type);
        return client;
    }

    [Fact]
    public async Task List_offers_base_allocation_and_the_listed_bitmaps_and_any_named_bitmap_that_exists()
    {
        await using var client = await ConnectStructuredAsync();
        Task<List<(uint Id, string Name)>> List(params string[] queries) => client.MetaContextsAsync(NbdOption.ListMetaContext, "vol0", queries);

        Assert.Equal([(0u, "base:allocation"), (0u, "qemu:dirty-bitmap:A"), (0u, "qemu:dirty-bitmap:B")], await List());
        Assert.Equal([(0u, "qemu:dirty-bitmap:A"), (0u, "qemu:dirty-bitmap:B")], await List("qemu:dirty-bitmap:"));
        Assert.Equal([(0u, "qemu:dirty-bitmap:A"), (0u, "qemu:dirty-bitmap:B")], await List("qemu:"));
        Assert.Equal([(0u, "base:allocation")], await List("base:"));
        Assert.Equal([(0u, "qemu:dirty-bitmap:gen:7")], await List("qemu:dirty-bitmap:gen:7")); // selectable, though not listed
        Assert.Empty(await List("qemu:dirty-bitmap:nope", "qemu:dirty-bitmap:stale", "x-other:thing"));
        Assert.Equal([(0u, "base:allocation")], await client.MetaContextsAsync(NbdOption.ListMetaContext, "other"));
    }

    [Fact]
    public async Task Set_selects_base_allocation_and_bitmaps_with_distinct_ids_and_ignores_what_it_does_not_serve()
    {
        await using var client = await ConnectStructuredAsync();
        var selected = await client.MetaContextsAsync(NbdOption.SetMetaContext, "vol0",
            "qemu:dirty-bitmap:A", "base:allocation", "qemu:dirty-bitmap:nope", "qemu:dirty-bitmap:stale", "qemu:dirty-bitmap:",
            "base:", "x-other:thing", "qemu:dirty-bitmap:A", "qemu:dirty-bitmap:gen:7");
        Assert.Equal(["base:allocation", "qemu:dirty-bitmap:A", "qemu:dirty-bitmap:gen:7"], selected.Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.Equal(selected.Count, selected.Select(c => c.Id).Distinct().Count());

        Assert.Empty(await client.MetaContextsAsync(NbdOption.SetMetaContext, "vol0", "qemu:dirty-bitmap:nope"));
        Assert.Empty(await client.MetaContextsAsync(NbdOption.SetMetaContext, "other", "qemu:dirty-bitmap:A")); // that export has none
    }

    [Fact]
    public async Task Block_status_answers_one_chunk_per_context_dirty_and_clean_extents_in_the_bitmap_chunk()
    {
        await _backing.WriteAsync(1 << 20, Enumerable.Repeat((byte)1, 1 << 20).ToArray(), fua: false);
        await using var client = await RawNbdClient.ConnectAsync(Socket);
        var ids = await client.NegotiateAsync("vol0", "base:allocation", "qemu:dirty-bitmap:A");
        Assert.Equal(2, ids.Count);

        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 4 << 20, cookie: 1);
        var chunks = await client.ReadBlockStatusAsync(1);
        Assert.Equal(ids.Values.Order(), chunks.Select(c => c.ContextId).Order()); // one chunk per context
        Assert.Equal([(1u << 20, 3u), (1u << 20, 0u), (2u << 20, 3u)], chunks.Single(c => c.ContextId == ids["base:allocation"]).Extents);
        Assert.Equal([(16u << 10, 0u), (8u << 10, D), ((1u << 20) - (24u << 10), 0u), (64u << 10, D), ((3u << 20) - (64u << 10), 0u)],
            chunks.Single(c => c.ContextId == ids["qemu:dirty-bitmap:A"]).Extents);

        // From inside a dirty range, and REQ_ONE: one extent per chunk, within the request.
        await client.SendRequestAsync(NbdCommand.BlockStatus, (1 << 20) + (32 << 10), 1 << 20, cookie: 2, CommandFlags.ReqOne);
        chunks = await client.ReadBlockStatusAsync(2);
        Assert.Equal([(32u << 10, D)], chunks.Single(c => c.ContextId == ids["qemu:dirty-bitmap:A"]).Extents);
        Assert.Single(chunks.Single(c => c.ContextId == ids["base:allocation"]).Extents);
    }

    [Fact]
    public async Task A_bitmap_alone_answers_one_chunk()
    {
        await using var client = await RawNbdClient.ConnectAsync(Socket);
        var ids = await client.NegotiateAsync("vol0", "qemu:dirty-bitmap:gen:7");
        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 64 << 10, cookie: 9);
        var chunk = Assert.Single(await client.ReadBlockStatusAsync(9));
        Assert.Equal(ids["qemu:dirty-bitmap:gen:7"], chunk.ContextId);
        Assert.Equal([(4096u, D), (60u << 10, 0u)], chunk.Extents);
    }

    [Fact]
    public async Task The_ranges_are_taken_when_the_client_attaches_and_held_while_it_stays()
    {
        await using var client = await ConnectStructuredAsync();
        Assert.Single(await client.MetaContextsAsync(NbdOption.SetMetaContext, "vol0", "qemu:dirty-bitmap:A"));
        lock (_catalog.Bitmaps) _catalog.Bitmaps["A"] = [(0, 8192)]; // the volume moved on between SET and GO
        var asked = _catalog.Asked;
        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos("vol0"));
        while ((await client.ReadOptionReplyAsync()).Type != OptionReply.Ack) { }
        Assert.Equal(asked + 1, _catalog.Asked);

        lock (_catalog.Bitmaps) _catalog.Bitmaps["A"] = [(0, 4 << 20)];
        for (var cookie = 1ul; cookie <= 3; cookie++)
        {
            await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 1 << 20, cookie);
            Assert.Equal([(8192u, D), ((1u << 20) - 8192, 0u)], Assert.Single(await client.ReadBlockStatusAsync(cookie)).Extents);
        }
        Assert.Equal(asked + 1, _catalog.Asked); // never asked again
    }

    [Fact]
    public async Task A_bitmap_gone_between_set_and_go_fails_go_and_negotiation_goes_on()
    {
        await using var client = await ConnectStructuredAsync();
        Assert.Single(await client.MetaContextsAsync(NbdOption.SetMetaContext, "vol0", "qemu:dirty-bitmap:A"));
        lock (_catalog.Bitmaps) _catalog.Bitmaps.Remove("A");
        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos("vol0"));
        Assert.Equal(OptionReply.ErrUnknown, (await client.ReadOptionReplyAsync()).Type);

        Assert.Single(await client.MetaContextsAsync(NbdOption.SetMetaContext, "vol0", "base:allocation"));
        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos("vol0"));
        while ((await client.ReadOptionReplyAsync()).Type != OptionReply.Ack) { }
        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 4096, cookie: 5);
        Assert.Equal(MetaContexts.BaseAllocationId, Assert.Single(await client.ReadBlockStatusAsync(5)).ContextId);
    }

    [Fact]
    public async Task Too_many_bitmaps_is_too_big_and_a_failed_set_leaves_nothing_selected()
    {
        await using var client = await ConnectStructuredAsync();
        Assert.Equal(2, (await client.MetaContextsAsync(NbdOption.SetMetaContext, "vol0", "base:allocation", "qemu:dirty-bitmap:A")).Count);
        var many = Enumerable.Range(0, MetaContexts.MaxDirtyBitmaps + 1).Select(i => $"qemu:dirty-bitmap:b{i}").ToArray();
        await client.SendOptionAsync(NbdOption.SetMetaContext, RawNbdClient.MetaQuery("vol0", many));
        Assert.Equal(OptionReply.ErrTooBig, (await client.ReadOptionReplyAsync()).Type);

        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos("vol0"));
        while ((await client.ReadOptionReplyAsync()).Type != OptionReply.Ack) { }
        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 4096, cookie: 6);
        Assert.Equal((NbdError.Inval, 6ul), await client.ReadAnyReplyAsync());
    }

    [Fact]
    public async Task A_list_computes_each_bitmap_once_and_at_most_as_many_as_a_set_selects()
    {
        // Each bitmap named is diffed from the log to know whether it can be served: a query repeated 2,000 times is one diff,
        // and more distinct bitmaps than a SET may select are refused before any.
        await using var client = await ConnectStructuredAsync();
        var asked = _catalog.Asked;
        Assert.Equal([(0u, "qemu:dirty-bitmap:A")],
            await client.MetaContextsAsync(NbdOption.ListMetaContext, "vol0", [.. Enumerable.Repeat("qemu:dirty-bitmap:A", 2000)]));
        Assert.Equal(asked + 1, _catalog.Asked);
        var many = Enumerable.Range(0, MetaContexts.MaxDirtyBitmaps + 1).Select(i => $"qemu:dirty-bitmap:b{i}").ToArray();
        await client.SendOptionAsync(NbdOption.ListMetaContext, RawNbdClient.MetaQuery("vol0", many));
        Assert.Equal(OptionReply.ErrTooBig, (await client.ReadOptionReplyAsync()).Type);
        Assert.Equal(asked + 1, _catalog.Asked);
    }

    [Fact]
    public async Task Contexts_selected_for_one_export_are_not_served_on_another()
    {
        await using var client = await ConnectStructuredAsync();
        Assert.Single(await client.MetaContextsAsync(NbdOption.SetMetaContext, "vol0", "qemu:dirty-bitmap:A"));
        var asked = _catalog.Asked;
        await client.SendOptionAsync(NbdOption.Go, RawNbdClient.NameAndInfos("other"));
        while ((await client.ReadOptionReplyAsync()).Type != OptionReply.Ack) { }
        Assert.Equal(asked, _catalog.Asked);
        await client.SendRequestAsync(NbdCommand.BlockStatus, 0, 4096, cookie: 7);
        Assert.Equal((NbdError.Inval, 7ul), await client.ReadAnyReplyAsync());
    }
}
