namespace ActorCache.Admin;

/// <summary>What makes a volume unhealthy, from its status report: the rules /health, the degraded gauge and the admin API share.</summary>
public static class VolumeHealth
{
    /// <summary>Recovery found a damaged record, the backing refuses writes, or the log does.</summary>
    public static bool IsDegraded(VolumeReport report) => DegradedReason(report) is not null;

    /// <summary>Why the volume is degraded (the first reason), or null.</summary>
    public static string? DegradedReason(VolumeReport report) => report.Status switch
    {
        { Degraded: { } corruption } => $"read-only due to log corruption: {OneLine(corruption)}",
        { Cache.BackingFailure: { } backing } => $"backing failure: {OneLine(backing)}",
        { Cache.LogFailure: { } log } => $"log failure: {OneLine(log)}",
        _ => null,
    };

    /// <summary>Read-only by definition (the user asked for it) or because the log is damaged.</summary>
    public static bool IsReadOnly(VolumeReport report) =>
        report.Status is { } s && (s.Definition.ReadOnly || s.Degraded is not null);

    /// <summary>Why the volume is not fully serviceable, one line per reason, each starting with the volume's name; empty when it is healthy.</summary>
    public static IEnumerable<string> Problems(VolumeReport report) => Reasons(report).Select(reason => $"{report.Name}: {reason}");

    /// <summary>The same reasons without the volume's name.</summary>
    public static IEnumerable<string> Reasons(VolumeReport report)
    {
        if (report.Recovering is { } recovering)
        {
            yield return recovering;
            yield break;
        }
        if (report.Status is not { } status)
        {
            yield return $"not answering (no status within {VolumeStatusReader.Timeout.TotalSeconds:0}s)";
            yield break;
        }
        if (!status.Online) yield return status.Offline is { } why ? $"offline: {OneLine(why)}" : "offline";
        if (status.Degraded is { } corruption) yield return $"degraded, read-only due to log corruption: {OneLine(corruption)}";
        if (status.Cache?.BackingFailure is { } backing) yield return $"degraded, backing failure: {OneLine(backing)}";
        if (status.Cache?.LogFailure is { } log) yield return $"degraded, log failure: {OneLine(log)}";
    }

    // Reasons come from exception messages; the response promises one line per reason.
    private static string OneLine(string text) => text.ReplaceLineEndings(" ");
}
