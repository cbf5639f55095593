namespace ActorCache.Admin;

/// <summary>What makes a volume unhealthy, from its status report: the rules /health and the degraded gauge share.</summary>
public static class VolumeHealth
{
    /// <summary>Recovery found a damaged record, the backing refuses writes, or the log does.</summary>
    public static bool IsDegraded(VolumeReport report) =>
        report.Status is { } s && (s.Degraded is not null || s.Cache?.BackingFailure is not null || s.Cache?.LogFailure is not null);

    /// <summary>Read-only by definition (the user asked for it) or because the log is damaged.</summary>
    public static bool IsReadOnly(VolumeReport report) =>
        report.Status is { } s && (s.Definition.ReadOnly || s.Degraded is not null);

    /// <summary>Why the volume is not fully serviceable, one line per reason; empty when it is healthy.</summary>
    public static IEnumerable<string> Problems(VolumeReport report)
    {
        if (report.Status is not { } status)
        {
            yield return $"{report.Name}: not answering (no status within {VolumeStatusReader.Timeout.TotalSeconds:0}s)";
            yield break;
        }
        if (!status.Online) yield return status.Offline is { } why ? $"{report.Name}: offline: {OneLine(why)}" : $"{report.Name}: offline";
        if (status.Degraded is { } corruption) yield return $"{report.Name}: degraded, read-only due to log corruption: {OneLine(corruption)}";
        if (status.Cache?.BackingFailure is { } backing) yield return $"{report.Name}: degraded, backing failure: {OneLine(backing)}";
        if (status.Cache?.LogFailure is { } log) yield return $"{report.Name}: degraded, log failure: {OneLine(log)}";
    }

    // Reasons come from exception messages; the response promises one line per reason.
    private static string OneLine(string text) => text.ReplaceLineEndings(" ");
}
