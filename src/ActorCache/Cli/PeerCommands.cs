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

    private static Command ResyncRate(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var rate = new Argument<string>("RATE") { Description = "bytes per second per peer, with an optional unit (100M); 0: no limit" };
        rate.Validators.Add(result =>
        {
            if (result.GetValue(rate) is { } text && !ActorCache.Blocks.ByteSize.TryParse(text, out _, out var error)) result.AddError(error);
        });
        var command = new Command("resync-rate", "Limit (or free) the resync rate of the volume's peers, live; asked of the primary.") { name, rate };
        options.SetAction(command, async run =>
        {
            ActorCache.Blocks.ByteSize.TryParse(run.Parsed.GetRequiredValue(rate), out var bytes, out _);
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
