using System.CommandLine;
using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>
/// <c>actorcache peer status|resync-rate</c>: a replicated volume's replicas as its primary sees them
/// (role, connection, disk state, out-of-sync bytes, resync progress, lag, ack latency), in the manner of
/// <c>drbdadm status</c>.
/// </summary>
public static class PeerCommands
{
    public static Command Create()
    {
        var options = new NodeOptions();
        var peer = new Command("peer",
            "The replicas of a replicated volume. The node is --node URL, or the one whose data directory is --data-dir " +
            $"(default {NodeTarget.DefaultDataDir}); any replica's node may be asked (it asks the primary). Changes need the admin token. " +
            "Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 usage.");
        options.AddTo(peer);
        peer.Subcommands.Add(Status(options));
        peer.Subcommands.Add(Verify(options));
        peer.Subcommands.Add(Resync(options));
        peer.Subcommands.Add(ResyncRate(options));
        return peer.WithExamples("actorcache peer status r --data-dir a", "actorcache peer status r --json | jq '.[] | select(.disk != \"UpToDate\")'");
    }

    private static Command Status(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var command = new Command("status",
            "Per replica: role, connection (local, connected, connecting, standalone, unreachable), disk state (UpToDate, Inconsistent, " +
            "Outdated, Unknown), out-of-sync bytes, resync progress, replication lag and ack latency.") { name };
        options.SetAction(command, async run =>
        {
            var peers = await run.Client.GetPeersAsync(run.Parsed.GetRequiredValue(name), run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(peers);
            else run.Output.Write(Table(peers));
        });
        return command.WithExamples("actorcache peer status r", "actorcache peer status r --json");
    }

    private static Command Verify(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var follow = new Option<bool>("--follow") { Description = "wait for the verify, with a progress bar on a terminal (without it the command returns once it started)" };
        var command = new Command("verify",
            "Online verify: the primary compares the checksum of every 4 KiB block with each connected peer's, at most at the resync rate when one " +
            "is set; blocks that differ are marked out of sync (outOfSyncBytes in peer status) and resynced by 'peer resync'.") { name, follow };
        options.SetAction(command, async run =>
        {
            var volume = run.Parsed.GetRequiredValue(name);
            var operation = await run.Client.StartVerifyAsync(volume, run.Cancellation);
            if (!run.Parsed.GetValue(follow))
            {
                if (run.Output.Json) run.Output.WriteJson(operation);
                else run.Output.Say($"verify of {Markup.Escape(volume)} started (operation {operation.Id}); 'actorcache peer status {Markup.Escape(volume)}' shows what differs");
                return;
            }
            await OperationProgress.WaitAsync(run.Client, operation, run.Output, run.Cancellation);
            var peers = await run.Client.GetPeersAsync(volume, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(peers);
            else run.Output.Write(Table(peers));
        });
        return command.WithExamples("actorcache peer verify r --follow", "actorcache peer verify r --follow --json | jq '.[].outOfSyncBytes'");
    }

    private static Command Resync(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var follow = new Option<bool>("--follow") { Description = "wait until every peer is UpToDate, with a progress bar of the resync on a terminal" };
        var command = new Command("resync",
            "Resync what the peers lack now: the primary reconnects each peer, which resyncs the blocks its out-of-sync bitmap holds " +
            "(and a peer that is away when it is back). With --follow, waits until every peer is connected and UpToDate.") { name, follow };
        options.SetAction(command, async run =>
        {
            var volume = run.Parsed.GetRequiredValue(name);
            var peers = await run.Client.ResyncAsync(volume, run.Cancellation);
            if (run.Parsed.GetValue(follow)) peers = await FollowAsync(run, volume, peers);
            if (run.Output.Json) run.Output.WriteJson(peers);
            else run.Output.Write(Table(peers));
        });
        return command.WithExamples("actorcache peer resync r --follow", "actorcache peer resync r --json");
    }

    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    private static bool InSync(IReadOnlyList<PeerInfo> peers) =>
        peers.All(p => p.Connection is "local" or "connected" && p.Disk == "UpToDate" && p.Resync is null && p.OutOfSyncBytes == 0);

    /// <summary>How long --follow waits for a peer that is not connected before it gives up (a peer that is down, cut off or refused).</summary>
    internal static readonly TimeSpan AwayLimit = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Ends a follow that cannot finish: a peer in split brain is never resynced until someone resolves it, and one not connected
    /// for <paramref name="limit"/> is down or refused. Without this, --follow waited for ever (exit 1 and the reason instead).
    /// </summary>
    internal sealed class AwayPeers(TimeSpan limit)
    {
        private readonly Dictionary<string, DateTime> _since = new(StringComparer.Ordinal);

        public void ThrowIfStuck(IReadOnlyList<PeerInfo> peers)
        {
            foreach (var peer in peers)
            {
                if (peer.SplitBrain)
                    throw new CliFailure($"peer {peer.Node} is in split brain with the primary; it is not resynced until that is resolved ('actorcache peer status' shows it)");
                if (peer.Connection is "local" or "connected")
                {
                    _since.Remove(peer.Node);
                    continue;
                }
                var since = _since.TryGetValue(peer.Node, out var at) ? at : _since[peer.Node] = DateTime.UtcNow;
                if (DateTime.UtcNow - since > limit)
                    throw new CliFailure($"peer {peer.Node} has not been connected for {limit.TotalSeconds:0} s ({peer.Connection}" +
                                         $"{(peer.Problem is { } problem ? $": {problem}" : "")}); it is resynced once it is back");
            }
        }
    }

    /// <summary>Polls the peers until all are in sync: a progress bar of the bytes resynced on a terminal, nothing on a pipe.</summary>
    private static async Task<IReadOnlyList<PeerInfo>> FollowAsync(CommandRun run, string volume, IReadOnlyList<PeerInfo> peers)
    {
        var away = new AwayPeers(AwayLimit);
        if (run.Output.Progress is not { } console)
        {
            while (!InSync(peers))
            {
                away.ThrowIfStuck(peers);
                peers = await NextAsync(run, volume);
            }
            return peers;
        }
        await console.Progress().AutoClear(true)
            .Columns(new SpinnerColumn(), new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(),
                new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask($"resync of {Markup.Escape(volume)}", maxValue: 1);
                while (!InSync(peers))
                {
                    away.ThrowIfStuck(peers);
                    var total = peers.Sum(p => p.Resync?.Total ?? p.OutOfSyncBytes);
                    task.IsIndeterminate = total == 0;
                    if (total > 0)
                    {
                        task.MaxValue = total;
                        task.Value = peers.Sum(p => p.Resync?.Done ?? 0);
                    }
                    peers = await NextAsync(run, volume);
                }
                task.Value = task.MaxValue;
            });
        return peers;
    }

    private static async Task<IReadOnlyList<PeerInfo>> NextAsync(CommandRun run, string volume)
    {
        await Task.Delay(PollInterval, run.Cancellation);
        return await run.Client.GetPeersAsync(volume, run.Cancellation);
    }

    private static Command ResyncRate(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var rate = new Argument<string>("RATE") { Description = "bytes per second per peer, with an optional unit (100M); 0: no limit" };
        rate.Validators.Add(result =>
        {
            if (result.GetValue(rate) is { } text && !ActorCache.Blocks.ByteSize.TryParse(text, out _, out var error, allowZero: true)) result.AddError(error);
        });
        var command = new Command("resync-rate", "Limit (or free) the resync rate of the volume's peers, live; asked of the primary.") { name, rate };
        options.SetAction(command, async run =>
        {
            ActorCache.Blocks.ByteSize.TryParse(run.Parsed.GetRequiredValue(rate), out var bytes, out _, allowZero: true);
            var volume = await run.Client.SetResyncRateAsync(run.Parsed.GetRequiredValue(name), bytes, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(volume);
            else run.Output.Say($"resync rate of {Markup.Escape(volume.Name)}: {(bytes == 0 ? "no limit" : SizeText.Of(bytes) + "/s")}");
        });
        return command.WithExamples("actorcache peer resync-rate r 100M", "actorcache peer resync-rate r 0");
    }

    public static IRenderable Table(IReadOnlyList<PeerInfo> peers)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("node").AddColumn("role").AddColumn("connection").AddColumn("disk").AddColumn(new TableColumn("out of sync").RightAligned())
            .AddColumn("resync").AddColumn(new TableColumn("lag").RightAligned()).AddColumn(new TableColumn("ack p50/p99").RightAligned()).AddColumn("problem");
        foreach (var p in peers)
        {
            var disk = p.Disk == "UpToDate" ? "[green]UpToDate[/]" : $"[yellow]{Markup.Escape(p.Disk)}[/]";
            var connection = p.Connection is "connected" or "local" ? p.Connection : $"[yellow]{Markup.Escape(p.Connection)}[/]";
            var resync = p.Resync is { } r
                ? $"{(r.Total == 0 ? 100 : r.Done * 100 / r.Total)}% of {SizeText.Of(r.Total)} at {SizeText.Of((long)r.BytesPerSecond)}/s" +
                  (r.BytesPerSecond > 0 ? $", {Math.Ceiling((r.Total - r.Done) / r.BytesPerSecond):0} s left" : "")
                : "";
            table.AddRow(Markup.Escape(p.Node), p.Role, connection, disk + (p.SplitBrain ? " [red]split brain[/]" : ""), SizeText.Of(p.OutOfSyncBytes),
                resync, p.Role == "primary" ? "" : $"{p.LagBatches} ({SizeText.Of(p.LagBytes)})",
                p.Role == "primary" ? "" : $"{p.AckLatencyP50Micros:0}/{p.AckLatencyP99Micros:0} us", Markup.Escape(p.Problem ?? ""));
        }
        return table;
    }
}
