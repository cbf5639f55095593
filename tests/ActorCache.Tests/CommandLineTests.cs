using ActorCache.Admin.Api;
using ActorCache.Cli;
using Spectre.Console;

namespace ActorCache.Tests;

/// <summary>The command line without a node: what parses and what is a usage mistake, how volumes are shown, where the node is looked for.</summary>
public sealed class CommandLineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static IReadOnlyList<string> Errors(string line) =>
        [.. Program.CommandLine().Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Errors.Select(e => e.Message)];

    [Theory]
    [InlineData("volume list")]
    [InlineData("volume list --json --node http://127.0.0.1:9460")]
    [InlineData("volume status vol0 --data-dir /srv/ac")]
    [InlineData("volume create vol1 --size 10G")]
    [InlineData("volume create vol1 --size 4096 --mode pass-through --backing /dev/sdb --read-only --token abc")]
    [InlineData("volume delete vol1 --force")]
    [InlineData("volume resize vol1 --size 1T")]
    [InlineData("volume mode vol1 write-through")]
    [InlineData("serve --volume vol0:1G")] // serve is untouched
    [InlineData("serve --node-name a --cluster 127.0.0.1:4053 --seed 127.0.0.1:4053 --seed 10.0.0.2:4053")]
    [InlineData("cluster show")]
    [InlineData("cluster show --json --data-dir a")]
    [InlineData("cluster leave")]
    [InlineData("cluster leave c --token abc")]
    [InlineData("cluster down 127.0.0.1:4055 --node http://127.0.0.1:9461")]
    [InlineData("peer resync-rate r 100M")]
    [InlineData("peer resync-rate r 0")] // no limit, as its help says
    public void Well_formed_commands_parse(string line) => Assert.Empty(Errors(line));

    [Theory]
    [InlineData("volume create vol1", "Option '--size' is required.")]
    [InlineData("volume create vol1 --size 10X", "volume vol1: '10X' has an unknown unit; use K, M, G, T or P")]
    [InlineData("volume create vol1 --size 6000", "volume vol1: size 6000 is not a multiple of 4 KiB")]
    [InlineData("volume create vol1 --size 1G --mode turbo", "unknown mode 'turbo'; use write-back, write-through or pass-through")]
    [InlineData("volume create vol1 --size 1G --bogus", "Unrecognized command or argument '--bogus'.")]
    [InlineData("volume create .hidden --size 1G", "volume name '.hidden' is not allowed; use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    [InlineData("volume resize vol1 --size 0", "volume vol1: size must be greater than zero")]
    [InlineData("volume mode vol1 fast", "unknown mode 'fast'; use write-back, write-through or pass-through")]
    [InlineData("volume mode vol1", "Required argument missing for command: 'mode'.")]
    [InlineData("volume list --node ftp://x", "--node 'ftp://x' is not a node's admin URL; write http://HOST:PORT, e.g. http://127.0.0.1:9460 (the node writes it to DATA_DIR/admin.url)")]
    [InlineData("volume", "Required command was not provided.")]
    [InlineData("cluster down", "Required argument missing for command: 'down'.")]
    [InlineData("cluster leave a b", "Unrecognized command or argument 'b'.")]
    [InlineData("cluster", "Required command was not provided.")]
    [InlineData("top --interval NaN", "--interval must be between 0.1 and 3600 seconds")]
    [InlineData("peer resync-rate r fast", "'fast' is not a size; write a whole number with an optional unit, e.g. 512M or 10G")]
    public void Usage_mistakes_are_parse_errors_with_the_message_serve_would_give(string line, string message) =>
        Assert.Contains(message, Errors(line));

    [Fact]
    public void Sizes_read_like_the_sizes_people_write()
    {
        Assert.Equal("0", SizeText.Of(0));
        Assert.Equal("512", SizeText.Of(512));
        Assert.Equal("4K", SizeText.Of(4096));
        Assert.Equal("64M", SizeText.Of(64L << 20));
        Assert.Equal("8.0M", SizeText.Of((8L << 20) + (28 << 10)));
        Assert.Equal("1.5G", SizeText.Of(3L << 29));
        Assert.Equal("2T", SizeText.Of(2L << 40));
    }

    private static VolumeInfo Info(string name, Action<VolumeInfoBuilder>? change = null)
    {
        var builder = new VolumeInfoBuilder();
        change?.Invoke(builder);
        return new VolumeInfo
        {
            Name = name,
            Size = 1L << 30,
            Mode = builder.Mode,
            SwitchingTo = builder.SwitchingTo,
            ReadOnly = builder.ReadOnly,
            Online = builder.Online,
            OfflineReason = builder.Online ? null : "offline: its backing /x.img is missing",
            Degraded = builder.Degraded,
            Backing = $"/data/volumes/{name}.img",
            BackingCreated = true,
            Generation = 7,
            CachedBytes = 3L << 20,
            LogBytes = (3L << 20) + 8192,
            Clients = 2,
            Health = builder.Online ? [] : ["offline: its backing /x.img is missing"],
            Cache = builder.Online
                ? new CacheInfo
                {
                    CachedBlocks = 768, LogBytes = (3L << 20) + 8192, LogCapacity = 2L << 30, Generation = 7, IndexBytes = 8224, BatchesWritten = 2,
                    Syncs = 2, SyncPointRecords = 0, BlocksDestaged = 0, RingWaits = 0, RetentionShrinks = 0, CorruptRecords = 0, TornTails = 0,
                }
                : null,
        };
    }

    private sealed class VolumeInfoBuilder
    {
        public string Mode { get; set; } = "write-back";
        public string? SwitchingTo { get; set; }
        public bool ReadOnly { get; set; }
        public bool Online { get; set; } = true;
        public string? Degraded { get; set; }
    }

    private static string Render(Spectre.Console.Rendering.IRenderable renderable)
    {
        var text = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(text), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 200;
        console.Write(renderable);
        return text.ToString();
    }

    [Fact]
    public void The_list_table_has_a_row_per_volume_with_its_state_in_words()
    {
        var table = Render(VolumeView.Table([
            Info("a"),
            Info("b", v => v.Online = false),
            Info("c", v => v.Degraded = "backing failure: EIO"),
            Info("d", v => v.SwitchingTo = "write-through"),
            Info("e", v => v.ReadOnly = true),
        ]));
        var lines = table.Split('\n');
        Assert.Contains(lines, l => l.Contains("NAME") && l.Contains("SIZE") && l.Contains("MODE") && l.Contains("STATE") && l.Contains("CLIENTS") &&
                                    l.Contains("CACHED") && l.Contains("LOG") && l.Contains("BACKING"));
        Assert.Matches(@"│ a\s+│\s+1G │ write-back\s+│ online\s+│\s+2 │\s+3M │\s+3\.0M │ /data/volumes/a\.img", table);
        Assert.Matches(@"│ b\s+│\s+1G │ write-back\s+│ offline: offline: its backing /x\.img is missing\s+│\s+2 │\s+- │\s+- │", table);
        Assert.Matches(@"│ c\s+│.*│ degraded: backing failure: EIO\s+│", table);
        Assert.Matches(@"│ d\s+│\s+1G │ write-back -> write-through │ switching to write-through\s+│", table);
        Assert.Matches(@"│ e\s+│.*│ online, read-only\s+│", table);
        Assert.Equal("no volumes; create one with actorcache volume create NAME --size SIZE\n", Render(VolumeView.Table([])));
    }

    [Fact]
    public void Status_details_show_the_cache_and_the_health()
    {
        var details = Render(VolumeView.Details(Info("a")));
        Assert.Contains("size        1G (1,073,741,824 bytes)", details);
        Assert.Contains("backing     /data/volumes/a.img (created by the node)", details);
        Assert.Contains("clients     2 NBD client(s) connected", details);
        Assert.Contains("cached      3M in the ring and the log, not yet on the backing", details);
        Assert.Contains("log         3.0M of 2G not yet destaged", details);
        Assert.Matches(@"health\s+ok", details);
        var offline = Render(VolumeView.Details(Info("b", v => v.Online = false)));
        Assert.Matches(@"cache\s+none \(pass-through, read-only or offline\)", offline);
        Assert.Matches(@"health\s+offline: its backing /x\.img is missing", offline);
    }

    [Fact]
    public async Task Resync_follow_gives_up_on_a_peer_in_split_brain_at_once_and_on_one_away_past_the_limit()
    {
        static PeerInfo Peer(string node, string connection, bool splitBrain = false) =>
            new(node, "secondary", connection, "Outdated", 4096, null, splitBrain, 0, 0, 0, 0, connection == "connected" ? null : "data endpoint of b is unknown");
        var away = new PeerCommands.AwayPeers(TimeSpan.FromMilliseconds(200));
        away.ThrowIfStuck([Peer("b", "connecting")]); // away, not for long yet
        away.ThrowIfStuck([Peer("b", "connected")]);  // back: the clock starts again
        away.ThrowIfStuck([Peer("b", "connecting")]);
        await Task.Delay(300);
        Assert.Contains("peer b has not been connected", Assert.Throws<CliFailure>(() => away.ThrowIfStuck([Peer("b", "connecting")])).Message);
        var splitBrain = new PeerCommands.AwayPeers(TimeSpan.FromMinutes(1));
        Assert.Contains("split brain", Assert.Throws<CliFailure>(() => splitBrain.ThrowIfStuck([Peer("c", "standalone", splitBrain: true)])).Message);
    }

    [Fact]
    public void An_empty_data_directory_is_a_usage_mistake()
    {
        var errors = Program.CommandLine().Parse(["volume", "list", "--data-dir", ""]).Errors.Select(e => e.Message);
        Assert.Contains("--data-dir is empty; give the node's data directory", errors);
    }

    [Fact]
    public void The_default_data_directorys_token_goes_only_to_the_node_whose_url_it_holds()
    {
        File.WriteAllText(Path.Combine(_dir, "admin.url"), "http://127.0.0.1:41234\n");
        File.WriteAllText(Path.Combine(_dir, "admin.token"), "abc123\n");
        // --node naming another host, no --data-dir: the local node's token is not sent there.
        var elsewhere = NodeTarget.Resolve(new Uri("http://10.0.0.9:9460"), null, null, defaultDataDir: _dir);
        Assert.Null(elsewhere.Token);
        Assert.Contains("is not the node of", elsewhere.TokenNote);
        // --node naming the local node's own listener: its token.
        Assert.Equal("abc123", NodeTarget.Resolve(new Uri("http://127.0.0.1:41234"), null, null, defaultDataDir: _dir).Token);
        // --data-dir given explicitly: the user named where the token is.
        Assert.Equal("abc123", NodeTarget.Resolve(new Uri("http://10.0.0.9:9460"), _dir, null).Token);
    }

    [Fact]
    public void The_node_is_found_through_the_data_directory_and_the_token_beside_it()
    {
        File.WriteAllText(Path.Combine(_dir, "admin.url"), "http://127.0.0.1:41234\n");
        File.WriteAllText(Path.Combine(_dir, "admin.token"), "abc123\n");
        var target = NodeTarget.Resolve(null, _dir, null);
        Assert.Equal(new Uri("http://127.0.0.1:41234"), target.Url);
        Assert.Equal("abc123", target.Token);

        var given = NodeTarget.Resolve(new Uri("http://10.0.0.1:9460"), _dir, "xyz");
        Assert.Equal(new Uri("http://10.0.0.1:9460"), given.Url); // --node wins over admin.url
        Assert.Equal("xyz", given.Token); // --token wins over admin.token
        Assert.Equal("the token given with --token", given.TokenNote);

        var empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        var noToken = NodeTarget.Resolve(new Uri("http://10.0.0.1:9460"), empty, null);
        Assert.Null(noToken.Token);
        Assert.Contains($"{empty}/admin.token does not exist", noToken.TokenNote);
        var missing = Assert.Throws<CliFailure>(() => NodeTarget.Resolve(null, empty, null));
        Assert.Equal($"no node to talk to: {empty}/admin.url does not exist; is a node running there?", missing.Message);
        File.WriteAllText(Path.Combine(empty, "admin.url"), "garbage");
        Assert.Contains("does not hold the node's URL ('garbage')", Assert.Throws<CliFailure>(() => NodeTarget.Resolve(null, empty, null)).Message);
    }
}
