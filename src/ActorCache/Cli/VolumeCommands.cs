using System.CommandLine;
using System.CommandLine.Parsing;
using ActorCache.Admin.Api;
using ActorCache.Volumes;
using Spectre.Console;

namespace ActorCache.Cli;

/// <summary>
/// <c>actorcache volume list|status|create|delete|resize|mode</c>: the volumes of a running node,
/// changed without a restart. Each verb is one call of <see cref="AdminClient"/> and prints its answer
/// for people or, with <c>--json</c>, as the API's JSON.
/// </summary>
public static class VolumeCommands
{
    public static Command Create()
    {
        var options = new NodeOptions();
        var volume = new Command("volume",
            "Manage the volumes of a running node, without a restart. The node is --node URL, or the one whose data directory is " +
            $"--data-dir (default {NodeTarget.DefaultDataDir}); changes need its admin token (DATA_DIR/admin.token, or --token). " +
            "Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 usage.");
        options.AddTo(volume);
        volume.Subcommands.Add(List(options));
        volume.Subcommands.Add(Status(options));
        volume.Subcommands.Add(CreateVolume(options));
        volume.Subcommands.Add(Delete(options));
        volume.Subcommands.Add(Resize(options));
        volume.Subcommands.Add(Mode(options));
        volume.Subcommands.Add(History(options));
        volume.Subcommands.Add(Revert(options));
        volume.Subcommands.Add(ReplicaCommands.Promote(options));
        volume.Subcommands.Add(ReplicaCommands.Demote(options));
        volume.Subcommands.Add(ReplicaCommands.Protocol(options));
        volume.Subcommands.Add(ReplicaCommands.DiscardMyData(options));
        return volume.WithExamples(
            "actorcache volume list                                  every volume of the node in ./data",
            "actorcache volume create vol1 --size 10G                a 10 GiB write-back volume, served at once",
            "actorcache volume mode vol1 write-through --data-dir /srv/ac",
            "actorcache volume list --json --node http://127.0.0.1:9460");
    }

    private static Command List(NodeOptions options)
    {
        var command = new Command("list", "Every volume of the node: size, mode, state, NBD clients, cached and log bytes, backing.");
        options.SetAction(command, async run =>
        {
            var listing = await run.Client.ListVolumesAsync(run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(listing);
            else run.Output.Write(VolumeView.Table(listing.Volumes));
        });
        return command.WithExamples("actorcache volume list", "actorcache volume list --json | jq -r '.volumes[].name'");
    }

    private static Command Status(NodeOptions options)
    {
        var name = NameArgument("the volume");
        var command = new Command("status", "One volume in detail: state and health, backing, clients, generation, and the cache's statistics.") { name };
        options.SetAction(command, async run =>
        {
            var volume = await run.Client.GetVolumeAsync(run.Parsed.GetRequiredValue(name), run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(volume);
            else run.Output.Write(VolumeView.Details(volume));
        });
        return command.WithExamples("actorcache volume status vol0", "actorcache volume status vol0 --json | jq .cachedBytes");
    }

    private static Command CreateVolume(NodeOptions options)
    {
        var name = NameArgument("the new volume's name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        var size = SizeOption("the volume's size: a whole number of 4 KiB blocks with an optional unit, e.g. 512M, 10G, 1T");
        var mode = new Option<string?>("--mode")
        {
            Description = "write-back (default: writes acknowledged from RAM, durable at FLUSH), write-through or pass-through",
            HelpName = "MODE",
        };
        mode.Validators.Add(result =>
        {
            if (result.GetValue(mode) is { } text && !VolumeSpec.TryParseMode(text, out _, out var error)) result.AddError(error);
        });
        var backing = new Option<string?>("--backing")
        {
            Description = "an existing file (extended sparsely if shorter) or block device to keep the data in " +
                          "(default: the node creates DATA_DIR/volumes/NAME.img, and removes it when the volume is deleted)",
            HelpName = "PATH",
        };
        var readOnly = new Option<bool>("--read-only") { Description = "serve an existing backing read-only" };
        var replicas = new Option<string?>("--replicas")
        {
            Description = "a replicated volume on these cluster nodes, the primary first (2 or 3 node names, e.g. a,b,c); each keeps its own copy",
            HelpName = "N1,N2[,N3]",
        };
        replicas.Validators.Add(result =>
        {
            if (result.GetValue(replicas) is { } text && !ActorCache.Replicas.ReplicaSet.TryParseNodes(text, out _, out var error)) result.AddError(error);
        });
        var protocol = new Option<string?>("--protocol")
        {
            Description = "with --replicas: A (FLUSH waits for the local log; peers catch up), B (and every peer's receipt) or C (default: and every peer's log)",
            HelpName = "A|B|C",
        };
        protocol.Validators.Add(result =>
        {
            if (result.GetValue(protocol) is { } text && !ActorCache.Replicas.ReplicaSet.TryParseProtocol(text, out _, out var error)) result.AddError(error);
        });
        var command = new Command("create",
            "Create a volume on the running node and serve it over NBD at once, with the checks of serve --volume. With --replicas, on every " +
            "node named (any node of the cluster may be asked). All or nothing: a volume that cannot be made leaves no file and no definition behind.")
            { name, size, mode, backing, readOnly, replicas, protocol };
        command.Validators.Add(result =>
        {
            if (result.GetValue(protocol) is not null && result.GetValue(replicas) is null) result.AddError("--protocol needs --replicas");
        });
        CheckSize(command, name, size);
        options.SetAction(command, async run =>
        {
            var volumeName = run.Parsed.GetRequiredValue(name);
            var path = run.Parsed.GetValue(backing);
            var created = await run.Client.CreateVolumeAsync(new CreateVolumeRequest
            {
                Name = volumeName,
                Size = ParsedSize(run.Parsed, name, size),
                Mode = run.Parsed.GetValue(mode),
                // The node may run in another directory: a relative path means one relative to where the user is.
                Backing = path is null ? null : Path.GetFullPath(path),
                ReadOnly = run.Parsed.GetValue(readOnly),
                Replicas = run.Parsed.GetValue(replicas) is { } nodes ? nodes.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : null,
                Protocol = run.Parsed.GetValue(protocol),
            }, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(created);
            else
                run.Output.Say($"created volume [bold]{Markup.Escape(created.Name)}[/]: {SizeText.Of(created.Size)} {created.Mode}" +
                               $"{(created.ReadOnly ? " read-only" : "")} on {Markup.Escape(created.Backing)}" +
                               (created.Replication is { } r ? $", replicated on {Markup.Escape(string.Join(",", r.Replicas))} (primary {Markup.Escape(r.Primary)}, protocol {r.Protocol})" : ""));
        });
        return command.WithExamples(
            "actorcache volume create vol1 --size 10G",
            "actorcache volume create scratch --size 512M --mode pass-through",
            "actorcache volume create db --size 100G --backing /dev/vg0/db",
            "actorcache volume create r --size 1G --replicas a,b,c --protocol C");
    }

    private static Command Delete(NodeOptions options)
    {
        var name = NameArgument("the volume");
        var force = new Option<bool>("--force")
        {
            Description = "delete even while NBD clients are connected (their connections are closed) or snapshots or clones depend on it",
        };
        var command = new Command("delete",
            "Delete a volume: it is flushed and closed, its log removed, and its backing too if the node created it (a backing given " +
            "with --backing is kept). Refused while NBD clients are connected, unless --force.") { name, force };
        options.SetAction(command, async run =>
        {
            var deleted = await run.Client.DeleteVolumeAsync(run.Parsed.GetRequiredValue(name), run.Parsed.GetValue(force), run.Cancellation);
            if (run.Output.Json)
            {
                run.Output.WriteJson(deleted);
                return;
            }
            var clients = deleted.ClientsClosed > 0 ? $", closed {deleted.ClientsClosed} NBD connection(s)" : "";
            var backing = deleted.BackingRemoved
                ? $"removed its backing {Markup.Escape(deleted.Backing)}"
                : $"kept its backing {Markup.Escape(deleted.Backing)} (the node did not create it)";
            run.Output.Say($"deleted volume [bold]{Markup.Escape(deleted.Name)}[/]{clients}; {backing}");
        });
        return command.WithExamples("actorcache volume delete scratch", "actorcache volume delete scratch --force");
    }

    private static Command Resize(NodeOptions options)
    {
        var name = NameArgument("the volume");
        var size = SizeOption("the new size, larger than the current one (volumes only grow), e.g. 20G");
        var command = new Command("resize",
            "Grow a volume while it runs. Clients connected now keep the size they negotiated; they see the new size when they " +
            "reconnect. Shrinking is refused.") { name, size };
        CheckSize(command, name, size);
        options.SetAction(command, async run =>
        {
            var resized = await run.Client.ResizeVolumeAsync(run.Parsed.GetRequiredValue(name), ParsedSize(run.Parsed, name, size), run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(resized);
            else
                run.Output.Say($"volume [bold]{Markup.Escape(resized.Name)}[/] is {SizeText.Of(resized.Size)}" +
                               (resized.Clients > 0 ? $"; its {resized.Clients} connected client(s) see the new size when they reconnect" : ""));
        });
        return command.WithExamples("actorcache volume resize vol1 --size 20G");
    }

    private static Command Mode(NodeOptions options)
    {
        var name = NameArgument("the volume");
        var mode = new Argument<string>("MODE") { Description = "write-back or write-through (pass-through needs a restart: serve --volume NAME:SIZE:MODE)" };
        mode.Validators.Add(result =>
        {
            if (!VolumeSpec.TryParseMode(result.GetValue(mode) ?? "", out _, out var error)) result.AddError(error);
        });
        var command = new Command("mode",
            "Switch a live volume between write-back and write-through. Leaving write-back first drains the log to the backing " +
            "(a progress bar shows it); the command returns when the volume is in the new mode.") { name, mode };
        options.SetAction(command, async run =>
        {
            var volumeName = run.Parsed.GetRequiredValue(name);
            var started = await run.Client.StartModeSwitchAsync(volumeName, run.Parsed.GetRequiredValue(mode), run.Cancellation);
            await OperationProgress.WaitAsync(run.Client, started, run.Output, run.Cancellation);
            var volume = await run.Client.GetVolumeAsync(volumeName, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(volume);
            else run.Output.Say($"volume [bold]{Markup.Escape(volume.Name)}[/] is now {volume.Mode}");
        });
        return command.WithExamples("actorcache volume mode vol1 write-through", "actorcache volume mode vol1 write-back");
    }

    private static Command History(NodeOptions options)
    {
        var name = NameArgument("the volume");
        var command = new Command("history",
            "The volume's restorable points, oldest first: every flush point the log still covers (older kept snapshots are in 'snapshot list'). " +
            "Each is served over NBD as VOL@gen:N; times are the batch times written in the log (UTC).") { name };
        options.SetAction(command, async run =>
        {
            var volumeName = run.Parsed.GetRequiredValue(name);
            var points = await run.Client.GetHistoryAsync(volumeName, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(points);
            else run.Output.Write(SnapshotView.History(volumeName, points));
        });
        return command.WithExamples("actorcache volume history vol0", "actorcache volume history vol0 --json | jq '.[0]'");
    }

    private static Command Revert(NodeOptions options)
    {
        var name = NameArgument("the volume");
        var to = new Option<string?>("--to") { Description = "a kept snapshot of the volume", HelpName = "SNAPSHOT" };
        var generation = new Option<long?>("--generation") { Description = "a generation the volume's history covers", HelpName = "G" };
        var at = new Option<string?>("--at") { Description = "a time: ISO-8601 UTC (2026-12-04T10:42:07Z) or relative (-90s, -5m, -2h)", HelpName = "TIME" };
        at.Validators.Add(result =>
        {
            if (result.GetValue(at) is { } text && !ActorCache.Snapshots.PointSpec.TryParseTime(text, out _))
                result.AddError(ActorCache.Snapshots.PointSpec.TimeError("--at", text));
        });
        var command = new Command("revert",
            "Bring the live volume back to a snapshot, generation or time, online: connected clients read the old content on their " +
            "next read. The current state is kept first as snapshot pre-revert-GENERATION, so a revert can be undone by reverting " +
            "to it; the revert is written as new history. Writes clients make while it runs may be overwritten.") { name, to, generation, at };
        command.Validators.Add(result =>
        {
            var given = new SymbolResult?[] { result.GetResult(to), result.GetResult(generation), result.GetResult(at) }.Count(r => r is not null);
            if (given != 1) result.AddError("give exactly one of --to SNAPSHOT, --generation G or --at TIME");
        });
        options.SetAction(command, async run =>
        {
            var volumeName = run.Parsed.GetRequiredValue(name);
            var started = await run.Client.StartRevertAsync(volumeName, new RevertRequest
            {
                To = run.Parsed.GetValue(to),
                Generation = run.Parsed.GetValue(generation),
                At = run.Parsed.GetValue(at),
            }, run.Cancellation);
            var finished = await OperationProgress.WaitAsync(run.Client, started, run.Output, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(finished);
            else run.Output.Say($"{Markup.Escape(finished.Description)}: done ({SizeText.Of(finished.Total)} rewritten)");
        });
        return command.WithExamples(
            "actorcache volume revert vol0 --to before-upgrade",
            "actorcache volume revert vol0 --at -5m",
            "actorcache volume revert vol0 --to pre-revert-1234            undo the last revert");
    }

    // ---- shared arguments ---------------------------------------------------------------------

    internal static Argument<string> NameArgument(string description)
    {
        var name = new Argument<string>("NAME") { Description = description };
        name.Validators.Add(result =>
        {
            if (result.GetValue(name) is { } text && !VolumeSpec.IsValidName(text)) result.AddError(VolumeSpec.NameError(text));
        });
        return name;
    }

    private static Option<string> SizeOption(string description) => new("--size") { Description = description, HelpName = "SIZE", Required = true };

    /// <summary>
    /// The size is checked where the volume's name is known, so the message is the one serve --volume
    /// gives. It reads the words as typed: taking the name's value here would convert it before its own
    /// validator ran, and that validator would then be skipped.
    /// </summary>
    private static void CheckSize(Command command, Argument<string> name, Option<string> size) =>
        command.Validators.Add(result =>
        {
            if (Word(result.GetResult(size)) is not { } text || Word(result.GetResult(name)) is not { } volume) return;
            if (!VolumeSpec.TryParseSize(volume, text, out _, out var error)) result.AddError(error);
        });

    private static string? Word(SymbolResult? result) => result?.Tokens is [var token] ? token.Value : null;

    private static long ParsedSize(ParseResult parsed, Argument<string> name, Option<string> size) =>
        VolumeSpec.TryParseSize(parsed.GetRequiredValue(name), parsed.GetRequiredValue(size), out var bytes, out var error)
            ? bytes
            : throw new CliFailure(error); // checked when parsing already
}
