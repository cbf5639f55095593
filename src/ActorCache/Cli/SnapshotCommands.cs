using System.CommandLine;
using ActorCache.Admin.Api;
using ActorCache.Snapshots;
using Spectre.Console;

namespace ActorCache.Cli;

/// <summary>
/// <c>actorcache snapshot create|list|delete|clone|diff</c>: snapshots after the fact (any flush point the
/// log still covers), kept by name, served as <c>VOL@NAME</c> exports, cloned and compared.
/// </summary>
public static class SnapshotCommands
{
    public static Command Create()
    {
        var options = new NodeOptions();
        var snapshot = new Command("snapshot",
            "Keep, list, delete, clone and compare snapshots of a running node's volumes. Any flush point the log still covers can become " +
            "a snapshot after the fact; kept snapshots outlive the log's window. Each is served read-only over NBD as VOL@NAME. " +
            "Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 usage.");
        options.AddTo(snapshot);
        snapshot.Subcommands.Add(CreateSnapshot(options));
        snapshot.Subcommands.Add(List(options));
        snapshot.Subcommands.Add(Delete(options));
        snapshot.Subcommands.Add(Clone(options));
        snapshot.Subcommands.Add(Diff(options));
        return snapshot.WithExamples(
            "actorcache snapshot create vol0 before-upgrade                 now (after a FLUSH)",
            "actorcache snapshot create vol0 oops --at -5m                  the volume as it was five minutes ago",
            "actorcache snapshot create vol0,vol1 consistent                one barrier across both volumes",
            "actorcache snapshot list vol0 --json",
            "nbdcopy 'nbd://127.0.0.1/vol0@before-upgrade' before.img       read it back over NBD");
    }

    private static Command CreateSnapshot(NodeOptions options)
    {
        var volumes = new Argument<string>("VOLUMES") { Description = "the volume, or several separated by commas (one barrier across them)" };
        var name = NameArgument();
        var at = new Option<string?>("--at")
        {
            Description = "keep the volume as it was at a time: ISO-8601 UTC (2026-12-04T10:42:07Z) or relative (-90s, -5m, -2h); " +
                          "the newest flush point at or before it",
            HelpName = "TIME",
        };
        at.Validators.Add(result =>
        {
            if (result.GetValue(at) is { } text && !ActorCache.Snapshots.PointSpec.TryParseTime(text, out _))
                result.AddError(ActorCache.Snapshots.PointSpec.TimeError("--at", text));
        });
        var generation = new Option<long?>("--generation") { Description = "keep the volume at this generation (see 'volume history')", HelpName = "G" };
        var command = new Command("create",
            "Keep a point of a volume's history as a named snapshot, recorded durably before this returns; no data is copied. " +
            "Without --at or --generation: now (the node FLUSHes and keeps the generation that closes).") { volumes, name, at, generation };
        command.Validators.Add(result =>
        {
            if (result.GetResult(at) is not null && result.GetResult(generation) is not null) result.AddError("give --at or --generation, not both");
        });
        options.SetAction(command, async run =>
        {
            var created = await run.Client.CreateSnapshotAsync(new CreateSnapshotRequest
            {
                Volumes = run.Parsed.GetRequiredValue(volumes).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
                Name = run.Parsed.GetRequiredValue(name),
                At = run.Parsed.GetValue(at),
                Generation = run.Parsed.GetValue(generation),
            }, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(created);
            else
                foreach (var s in created)
                    run.Output.Say($"kept snapshot [bold]{Markup.Escape(s.Export)}[/]: generation {s.Generation} of {SnapshotView.Time(s.Time)}");
        });
        return command.WithExamples(
            "actorcache snapshot create vol0 before-upgrade",
            "actorcache snapshot create vol0 oops --at 2026-12-04T10:42:07Z",
            "actorcache snapshot create vol0 g1234 --generation 1234");
    }

    private static Command List(NodeOptions options)
    {
        var volume = new Argument<string?>("VOLUME") { Description = "only this volume's snapshots", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("list", "Kept snapshots: export name, generation, time, state (ok or expired), bytes only they hold, clones.") { volume };
        options.SetAction(command, async run =>
        {
            var snapshots = await run.Client.ListSnapshotsAsync(run.Parsed.GetValue(volume), run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(snapshots);
            else run.Output.Write(SnapshotView.Snapshots(snapshots));
        });
        return command.WithExamples("actorcache snapshot list", "actorcache snapshot list vol0 --json | jq -r '.[].export'");
    }

    private static Command Delete(NodeOptions options)
    {
        var snapshot = SnapshotArgument();
        var command = new Command("delete",
            "Delete a kept snapshot: the history it held goes back to the destager (space only it held comes back). Refused while an NBD " +
            "client reads it or a clone reads through to it.") { snapshot };
        options.SetAction(command, async run =>
        {
            var (volume, name) = Split(run.Parsed.GetRequiredValue(snapshot));
            var deleted = await run.Client.DeleteSnapshotAsync(volume, name, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(deleted);
            else run.Output.Say($"deleted snapshot [bold]{Markup.Escape(deleted.Export)}[/]");
        });
        return command.WithExamples("actorcache snapshot delete vol0@before-upgrade");
    }

    private static Command Clone(NodeOptions options)
    {
        var snapshot = SnapshotArgument();
        var name = new Argument<string>("NEWVOL") { Description = "the new volume's name" };
        name.Validators.Add(result =>
        {
            if (result.GetValue(name) is { } text && !Volumes.VolumeSpec.IsValidName(text)) result.AddError(Volumes.VolumeSpec.NameError(text));
        });
        var mode = new Option<string?>("--mode") { Description = "the clone's cache mode: write-back (default) or write-through", HelpName = "MODE" };
        var independent = new Option<bool>("--independent")
        {
            Description = "also copy the snapshot's data into the clone in the background (a progress bar shows it), after which it no longer needs the snapshot",
        };
        var command = new Command("clone",
            "A writable volume of the snapshot's size whose content starts as the snapshot's, served at once: unwritten blocks read " +
            "through to the snapshot. Writes to the clone never change the snapshot or its volume.") { snapshot, name, mode, independent };
        options.SetAction(command, async run =>
        {
            var (volume, snap) = Split(run.Parsed.GetRequiredValue(snapshot));
            var started = await run.Client.StartCloneAsync(volume, snap, new CloneRequest
            {
                Name = run.Parsed.GetRequiredValue(name),
                Mode = run.Parsed.GetValue(mode),
                Independent = run.Parsed.GetValue(independent),
            }, run.Cancellation);
            await OperationProgress.WaitAsync(run.Client, started, run.Output, run.Cancellation);
            var clone = await run.Client.GetVolumeAsync(run.Parsed.GetRequiredValue(name), run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(clone);
            else
                run.Output.Say($"cloned [bold]{Markup.Escape(volume)}@{Markup.Escape(snap)}[/] as volume [bold]{Markup.Escape(clone.Name)}[/] " +
                               $"({SizeText.Of(clone.Size)}, {clone.Mode}{(run.Parsed.GetValue(independent) ? ", independent" : ", reading through to the snapshot")})");
        });
        return command.WithExamples(
            "actorcache snapshot clone vol0@before-upgrade test1",
            "actorcache snapshot clone vol0@before-upgrade keep1 --independent");
    }

    private static Command Diff(NodeOptions options)
    {
        var from = new Argument<string>("FROM") { Description = "the older point: VOL@SNAPSHOT, VOL@gen:N or VOL@TIME" };
        var to = new Argument<string>("TO") { Description = "the newer point of the same volume, or VOL: the live volume" };
        var command = new Command("diff",
            "The byte ranges whose content may differ between two points of a volume, from the log and the snapshots' metadata, " +
            "without reading the blocks (no range that changed is missing). Also served over NBD as the meta context " +
            "qemu:dirty-bitmap:FROM on export TO.") { from, to };
        options.SetAction(command, async run =>
        {
            var a = run.Parsed.GetRequiredValue(from);
            var b = run.Parsed.GetRequiredValue(to);
            var ranges = await run.Client.DiffAsync(a, b, run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(ranges);
            else run.Output.Write(SnapshotView.Diff(a, b, ranges));
        });
        return command.WithExamples("actorcache snapshot diff vol0@before-upgrade vol0", "actorcache snapshot diff vol0@gen:100 vol0@gen:200 --json");
    }

    // ---- shared arguments ---------------------------------------------------------------------

    private static Argument<string> NameArgument()
    {
        // Checked by the node, like unknown volumes and duplicates: a refused name exits 1, not 2.
        return new Argument<string>("NAME") { Description = "the snapshot's name: 1-64 letters, digits, '.', '_' or '-', unique per volume" };
    }

    private static Argument<string> SnapshotArgument()
    {
        var snapshot = new Argument<string>("VOL@SNAPSHOT") { Description = "the snapshot, as its export name: VOL@NAME" };
        snapshot.Validators.Add(result =>
        {
            if (result.GetValue(snapshot) is { } text && (text.IndexOf('@') is var at && (at <= 0 || at == text.Length - 1)))
                result.AddError($"'{text}' is not VOL@SNAPSHOT, e.g. vol0@before-upgrade");
        });
        return snapshot;
    }

    private static (string Volume, string Name) Split(string export)
    {
        var (volume, name) = SnapshotService.SplitExport(export);
        return (volume, name!);
    }
}
