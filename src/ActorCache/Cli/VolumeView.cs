using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>Volumes for people: the table of <c>volume list</c> and the details of <c>volume status</c>, the same facts as the JSON in human form.</summary>
public static class VolumeView
{
    public static IRenderable Table(IReadOnlyList<VolumeInfo> volumes)
    {
        if (volumes.Count == 0) return new Markup("no volumes; create one with [bold]actorcache volume create NAME --size SIZE[/]\n");
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumns("NAME", "SIZE", "MODE", "STATE", "CLIENTS", "CACHED", "LOG", "BACKING");
        table.Columns[1].RightAligned();
        table.Columns[4].RightAligned();
        table.Columns[5].RightAligned();
        table.Columns[6].RightAligned();
        foreach (var v in volumes)
        {
            table.AddRow(
                new Text(v.Name),
                new Text(SizeText.Of(v.Size)),
                new Text(Mode(v)),
                new Markup(State(v)),
                new Text(v.Clients.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                new Text(v.Cache is null ? "-" : SizeText.Of(v.CachedBytes)),
                new Text(v.Cache is null ? "-" : SizeText.Of(v.LogBytes)),
                new Text(v.Backing));
        }
        return table;
    }

    public static IRenderable Details(VolumeInfo v)
    {
        var grid = new Grid().AddColumn(new GridColumn().NoWrap().PadRight(2)).AddColumn();
        void Row(string key, string markup) => grid.AddRow(new Markup($"[bold]{key}[/]"), new Markup(markup));
        Row("volume", Markup.Escape(v.Name));
        Row("size", $"{SizeText.Of(v.Size)} ({v.Size:N0} bytes)");
        Row("mode", Markup.Escape(Mode(v)));
        Row("state", State(v));
        Row("backing", $"{Markup.Escape(v.Backing)}{(v.BackingCreated ? " (created by the node)" : "")}");
        Row("clients", $"{v.Clients} NBD client(s) connected");
        if (v.Replication is { } r)
            Row("replication", $"{r.Role} here; primary {(r.Primary.Length > 0 ? Markup.Escape(r.Primary) : "none")}, replicas {Markup.Escape(string.Join(",", r.Replicas))}, " +
                               $"protocol {r.Protocol} (epoch {r.Epoch}); 'actorcache peer status {Markup.Escape(v.Name)}' shows the peers");
        if (v.Cache is { } c)
        {
            Row("generation", $"{v.Generation}");
            Row("cached", $"{SizeText.Of(v.CachedBytes)} in the ring and the log, not yet on the backing");
            Row("log", $"{SizeText.Of(v.LogBytes)} of {SizeText.Of(c.LogCapacity)} not yet destaged");
            Row("index", $"{c.IndexBytes:N0} bytes of memory");
            Row("log writes", $"{c.BatchesWritten} batches, {c.Syncs} syncs, {c.SyncPointRecords} sync-point records");
            Row("destaged", $"{SizeText.Of(c.BlocksDestaged * 4096)} ({c.BlocksDestaged} blocks)");
            Row("ring waits", $"{c.RingWaits}");
            Row("retention", $"{c.RetentionShrinks} shrinks");
            Row("recovery", $"{c.CorruptRecords} corrupt records, {c.TornTails} torn tails");
            if (c.ScrubTotalBytes > 0)
                Row("scrub", c.ScrubVerifiedBytes >= c.ScrubTotalBytes
                    ? $"verified the {SizeText.Of(c.ScrubTotalBytes)} of log the persisted index covered"
                    : $"verifying the log the persisted index covered: {c.ScrubVerifiedBytes * 100 / c.ScrubTotalBytes}% ({SizeText.Of(c.ScrubVerifiedBytes)} of {SizeText.Of(c.ScrubTotalBytes)})");
        }
        else
        {
            Row("cache", "none (pass-through, read-only or offline)");
        }
        Row("health", v.Health.Count == 0 ? "[green]ok[/]" : string.Join("\n", v.Health.Select(h => $"[red]{Markup.Escape(h)}[/]")));
        return grid;
    }

    private static string Mode(VolumeInfo v) => v.SwitchingTo is { } to ? $"{v.Mode} -> {to}" : v.Mode;

    /// <summary>online, recovering, offline, degraded or read-only, in colour (markup).</summary>
    public static string State(VolumeInfo v)
    {
        if (v.State == "recovering")
            return v.Recovery is { TotalBytes: > 0 } r
                ? $"[yellow]recovering[/] {r.Percent}% ({SizeText.Of(r.DoneBytes)} of {SizeText.Of(r.TotalBytes)}){(r.SecondsLeft is { } left ? $", about {left} s left" : "")}"
                : "[yellow]recovering[/] (opening)";
        if (!v.Online) return $"[red]offline[/]{(v.OfflineReason is { } why ? $": {Markup.Escape(why)}" : "")}";
        if (v.Degraded is { } degraded) return $"[yellow]degraded[/]: {Markup.Escape(degraded)}";
        if (v.SwitchingTo is { } to) return $"[yellow]switching to {Markup.Escape(to)}[/]";
        return v.ReadOnly ? "[green]online[/], read-only" : "[green]online[/]";
    }
}
