using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>
/// <c>actorcache top</c>: a node's volumes live, in the manner of DRBD's <c>drbdmon</c>: IOPS and MiB/s, FLUSH
/// latency (p50, p99), dirty log bytes, destage rate and how far back each volume can be restored, from two scrapes
/// of the node's <c>/metrics</c> (what Prometheus and the Grafana dashboard read), refreshed until Ctrl-C.
/// </summary>
public static class TopCommand
{
    private const double MiB = 1 << 20;
    private const string FlushLatencyBuckets = "actorcache_cache_flush_latency_seconds_bucket";

    public static Command Create()
    {
        var options = new NodeOptions();
        var once = new Option<bool>("--once") { Description = "print one frame (rates over one interval) and exit: for scripts and tests" };
        var interval = new Option<double>("--interval")
        {
            Description = "seconds between two scrapes, the span each rate is computed over (default 1)",
            HelpName = "SECONDS",
            DefaultValueFactory = _ => 1.0,
        };
        interval.Validators.Add(result =>
        {
            if (result.GetValue(interval) is not (>= 0.1 and <= 3600)) result.AddError("--interval must be between 0.1 and 3600 seconds");
        });
        var command = new Command("top",
            "A running node's volumes live, refreshed every --interval until Ctrl-C: read and write IOPS and MiB/s, FLUSHes per second " +
            "and their latency (p50 and p99), dirty bytes in the log, destage rate, generation and the oldest restorable point. Rates " +
            "come from two scrapes of the node's /metrics. --once prints one frame; --once --json prints its numbers. The node is --node URL, " +
            $"or the one whose data directory is --data-dir (default {NodeTarget.DefaultDataDir}). Exit codes: 0 done, 1 failed, 2 usage.")
        {
            once, interval,
        };
        options.AddTo(command);
        command.Validators.Add(result =>
        {
            if (result.GetValue(options.Json) && !result.GetValue(once)) result.AddError("top --json needs --once: a live view has no JSON");
        });
        options.SetAction(command, async run =>
        {
            var every = TimeSpan.FromSeconds(run.Parsed.GetValue(interval));
            if (run.Parsed.GetValue(once))
            {
                var first = await run.Client.GetMetricsAsync(run.Cancellation);
                await Task.Delay(every, run.Cancellation);
                var frame = Compute(first, await run.Client.GetMetricsAsync(run.Cancellation));
                if (run.Output.Json) run.Output.WriteJson(frame);
                else run.Output.Write(View(frame, run.Client.Node, live: false));
                return;
            }
            await LiveAsync(run, every);
        });
        return command.WithExamples(
            "actorcache top                                every volume of the node in ./data, once a second until Ctrl-C",
            "actorcache top --interval 5 --node http://10.0.0.5:9460",
            "actorcache top --once --json | jq '.volumes[] | {volume, writeIops, flushLatencyP50Ms, flushLatencyP99Ms}'");
    }

    /// <summary>Redrawn in place every interval; Ctrl-C ends it with exit 0 (the terminal restored).</summary>
    private static async Task LiveAsync(CommandRun run, TimeSpan every)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(run.Cancellation);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var previous = await run.Client.GetMetricsAsync(stop.Token);
            IRenderable waiting = new Markup($"[dim]{Markup.Escape(run.Client.Node.ToString())}: measuring the first {every.TotalSeconds:0.#} s...[/]");
            await run.Output.Stdout.Live(waiting).AutoClear(false).StartAsync(async context =>
            {
                while (!stop.IsCancellationRequested)
                {
                    await Task.Delay(every, stop.Token);
                    var current = await run.Client.GetMetricsAsync(stop.Token);
                    context.UpdateTarget(View(Compute(previous, current), run.Client.Node, live: true));
                    context.Refresh();
                    previous = current;
                }
            });
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Ctrl-C: the last frame stays on the screen
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>The rates between two scrapes, per volume (every volume the second one has).</summary>
    public static TopFrame Compute(MetricsSample before, MetricsSample after)
    {
        var seconds = Math.Max(Stopwatch.GetElapsedTime(before.Timestamp, after.Timestamp).TotalSeconds, 1e-3);
        var volumes = new List<VolumeRates>();
        foreach (var volume in after.Volumes("actorcache_volume_online"))
        {
            double? Now(string metric) => after.Volume(metric, volume);
            // A counter that went down (a volume deleted and made again between the scrapes) counts from zero.
            double Delta(string metric) => (Now(metric) ?? 0) - (before.Volume(metric, volume) is { } b && b <= (Now(metric) ?? 0) ? b : 0);
            double? Rate(string metric, double unit = 1) => Now(metric) is null ? null : Delta(metric) / seconds / unit;

            var flushes = Delta("actorcache_cache_flushes_total");
            var flushSeconds = Delta("actorcache_cache_flush_seconds_total");
            var totalFlushes = Now("actorcache_cache_flushes_total");
            var flushBuckets = LatencyQuantiles.Between(before.Buckets(FlushLatencyBuckets, volume), after.Buckets(FlushLatencyBuckets, volume));
            var oldest = Now("actorcache_history_oldest_restorable_seconds");
            volumes.Add(new VolumeRates
            {
                Volume = volume,
                Online = Now("actorcache_volume_online") == 1,
                Mode = after.LabelWhere("actorcache_volume_mode", volume, "mode", 1),
                ReadIops = Rate("actorcache_volume_reads_total") ?? 0,
                WriteIops = Rate("actorcache_volume_writes_total") ?? 0,
                ReadMiBps = Rate("actorcache_volume_read_bytes_total", MiB) ?? 0,
                WriteMiBps = Rate("actorcache_volume_written_bytes_total", MiB) ?? 0,
                Reads = (long)(Now("actorcache_volume_reads_total") ?? 0),
                Writes = (long)(Now("actorcache_volume_writes_total") ?? 0),
                ReadBytes = (long)(Now("actorcache_volume_read_bytes_total") ?? 0),
                WrittenBytes = (long)(Now("actorcache_volume_written_bytes_total") ?? 0),
                FlushesPerSecond = Rate("actorcache_cache_flushes_total"),
                FlushLatencyMs = flushes > 0 ? flushSeconds / flushes * 1000 : null,
                FlushLatencyMsSinceStart = totalFlushes > 0 ? Now("actorcache_cache_flush_seconds_total") / totalFlushes * 1000 : null,
                FlushLatencyP50Ms = LatencyQuantiles.Quantile(0.5, flushBuckets) * 1000,
                FlushLatencyP99Ms = LatencyQuantiles.Quantile(0.99, flushBuckets) * 1000,
                DirtyBytes = (long?)Now("actorcache_log_bytes"),
                LogCapacityBytes = (long?)Now("actorcache_log_capacity_bytes"),
                CachedBytes = (long?)(Now("actorcache_cache_cached_blocks") * 4096),
                DestageMiBps = Rate("actorcache_cache_blocks_destaged_total", MiB / 4096),
                Generation = (long?)Now("actorcache_log_generation"),
                OldestRestorable = oldest > 0 ? DateTimeOffset.FromUnixTimeMilliseconds((long)(oldest.Value * 1000)) : null,
            });
        }
        return new TopFrame
        {
            Time = DateTimeOffset.UtcNow,
            IntervalSeconds = Math.Round(seconds, 3),
            RingFreeSlots = (long)(after.Node("actorcache_ring_free_slots") ?? 0),
            RingSlots = (long)(after.Node("actorcache_ring_slots") ?? 0),
            Volumes = volumes,
        };
    }

    private static IRenderable View(TopFrame frame, Uri node, bool live)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumns("VOLUME", "MODE", "R IOPS", "W IOPS", "R MiB/s", "W MiB/s", "FLUSH/s", "FLUSH p50 ms", "FLUSH p99 ms", "DIRTY LOG",
                "DESTAGE MiB/s", "GEN", "RESTORABLE FROM");
        foreach (var column in table.Columns.Skip(2)) column.RightAligned();
        foreach (var v in frame.Volumes)
        {
            table.AddRow(
                new Markup(v.Online ? $"[bold]{Markup.Escape(v.Volume)}[/]" : $"[red]{Markup.Escape(v.Volume)} (offline)[/]"),
                new Text(v.Mode ?? "-"),
                new Text(Number(v.ReadIops)),
                new Text(Number(v.WriteIops)),
                new Text(v.ReadMiBps.ToString("0.0", CultureInfo.InvariantCulture)),
                new Text(v.WriteMiBps.ToString("0.0", CultureInfo.InvariantCulture)),
                new Text(v.FlushesPerSecond is { } f ? Number(f) : "-"),
                new Text(Milliseconds(v.FlushLatencyP50Ms)),
                new Text(Milliseconds(v.FlushLatencyP99Ms)),
                new Markup(Dirty(v)),
                new Text(v.DestageMiBps is { } d ? d.ToString("0.0", CultureInfo.InvariantCulture) : "-"),
                new Text(v.Generation?.ToString(CultureInfo.InvariantCulture) ?? "-"),
                new Text(v.OldestRestorable is { } t ? $"{t:HH:mm:ss} ({Age(frame.Time - t)} ago)" : "-"));
        }
        var ring = frame.RingSlots > 0 ? $", ring {100.0 * (frame.RingSlots - frame.RingFreeSlots) / frame.RingSlots:0}% used" : "";
        table.Caption($"[dim]{Markup.Escape(node.ToString())} {frame.Time:yyyy-MM-dd HH:mm:ss}Z, rates over {frame.IntervalSeconds:0.0#} s{ring}" +
                                 (live ? ", Ctrl-C to quit" : "") + "[/]");
        return table;
    }

    private static string Milliseconds(double? ms) => ms?.ToString("0.00", CultureInfo.InvariantCulture) ?? "-";

    private static string Number(double value) => value.ToString(value >= 100 ? "0" : "0.0", CultureInfo.InvariantCulture);

    private static string Dirty(VolumeRates v)
    {
        if (v.DirtyBytes is not { } dirty) return "-";
        var text = SizeText.Of(dirty);
        if (v.LogCapacityBytes is not > 0) return Markup.Escape(text);
        var share = (double)dirty / v.LogCapacityBytes.Value;
        var colour = share >= 0.9 ? "red" : share >= 0.5 ? "yellow" : "default";
        return $"[{colour}]{Markup.Escape(text)} ({share * 100:0}%)[/]";
    }

    private static string Age(TimeSpan age) =>
        age.TotalSeconds < 0 ? "0 s"
        : age.TotalMinutes < 1 ? $"{age.TotalSeconds:0} s"
        : age.TotalHours < 1 ? $"{(int)age.TotalMinutes} min {age.Seconds} s"
        : $"{(int)age.TotalHours} h {age.Minutes} min";
}
