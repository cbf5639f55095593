using System.Globalization;
using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>History, snapshots and diffs for people: the same facts as the JSON, as tables.</summary>
public static class SnapshotView
{
    public static string Time(DateTime utc) => utc.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);

    public static IRenderable History(string volume, IReadOnlyList<HistoryPoint> points)
    {
        if (points.Count == 0)
            return new Markup($"volume {Markup.Escape(volume)} has no restorable point in its log now: nothing was flushed since everything " +
                              "was destaged ('actorcache snapshot list' shows its kept snapshots)\n");
        var table = new Table().Border(TableBorder.Rounded).AddColumns("GENERATION", "TIME (UTC)", "WRITTEN SINCE");
        table.Columns[0].RightAligned();
        table.Columns[2].RightAligned();
        foreach (var p in points)
            table.AddRow(p.Generation.ToString(CultureInfo.InvariantCulture), Time(p.Time), SizeText.Of(p.Bytes));
        table.Caption($"{points.Count} restorable point(s); export one as {Markup.Escape(volume)}@gen:N, or keep it with 'actorcache snapshot create'");
        return table;
    }

    public static IRenderable Snapshots(IReadOnlyList<SnapshotInfo> snapshots)
    {
        if (snapshots.Count == 0) return new Markup("no snapshots; keep one with [bold]actorcache snapshot create VOL NAME[/]\n");
        var table = new Table().Border(TableBorder.Rounded).AddColumns("EXPORT", "GENERATION", "TIME (UTC)", "STATE", "EXCLUSIVE", "CLONES");
        table.Columns[1].RightAligned();
        table.Columns[4].RightAligned();
        foreach (var s in snapshots)
            table.AddRow(
                new Text(s.Export),
                new Text(s.Generation.ToString(CultureInfo.InvariantCulture)),
                new Text(Time(s.Time)),
                new Markup(s.State == "ok" ? "ok" : $"[red]{Markup.Escape(s.State)}[/]"),
                new Text(SizeText.Of(s.ExclusiveBytes)),
                new Text(s.Clones.Count == 0 ? "-" : string.Join(", ", s.Clones)));
        return table;
    }

    public static IRenderable Diff(string from, string to, IReadOnlyList<ChangedRangeInfo> ranges)
    {
        var total = ranges.Sum(r => r.Length);
        if (ranges.Count == 0) return new Markup($"no block changed between {Markup.Escape(from)} and {Markup.Escape(to)}\n");
        var table = new Table().Border(TableBorder.Rounded).AddColumns("OFFSET", "LENGTH");
        table.Columns[0].RightAligned();
        table.Columns[1].RightAligned();
        foreach (var r in ranges) table.AddRow(r.Offset.ToString(CultureInfo.InvariantCulture), r.Length.ToString(CultureInfo.InvariantCulture));
        table.Caption($"{ranges.Count} range(s), {SizeText.Of(total)} may differ between {Markup.Escape(from)} and {Markup.Escape(to)}");
        return table;
    }
}
