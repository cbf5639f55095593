using System.Globalization;
using System.Text.RegularExpressions;
using ActorCache.Cache;

namespace ActorCache.Snapshots;

/// <summary>
/// How a user names a point of a volume's history, after the <c>@</c> of an export name or in
/// <c>--at</c>: <c>gen:N</c> (a generation), a time in ISO-8601 UTC (<c>2026-12-04T10:42:07Z</c>), a time
/// relative to now (<c>-90s</c>, <c>-5m</c>, <c>-2h</c>, <c>-1d</c>), or, for exports, a snapshot's name.
/// A time means the newest sync point at or before it, by the times written in the log.
/// </summary>
public static partial class PointSpec
{
    [GeneratedRegex(@"^-(\d+)(s|m|h|d)$")]
    private static partial Regex Relative();

    [GeneratedRegex(@"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$")]
    private static partial Regex Absolute();

    /// <summary>A generation or a time; false when the text is neither (for exports: then it is a snapshot name).</summary>
    public static bool TryParse(string text, DateTimeOffset now, out PointQuery? query)
    {
        query = null;
        if (text.StartsWith("gen:", StringComparison.Ordinal))
        {
            if (!long.TryParse(text.AsSpan(4), NumberStyles.None, CultureInfo.InvariantCulture, out var generation) || generation < 1) return false;
            query = PointQuery.AtGeneration(generation);
            return true;
        }
        if (Relative().Match(text) is { Success: true } relative)
        {
            var unit = relative.Groups[2].Value switch
            {
                "s" => 1L,
                "m" => 60L,
                "h" => 3600L,
                _ => 86400L,
            };
            // Further back than the calendar goes (the text comes from any NBD client too) is the earliest time, before every point.
            var maxAmount = (long)((now - DateTimeOffset.MinValue).TotalSeconds / unit);
            query = long.TryParse(relative.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var amount) && amount <= maxAmount
                ? PointQuery.AtTime(now - TimeSpan.FromSeconds(amount * unit))
                : PointQuery.AtTime(DateTimeOffset.MinValue);
            return true;
        }
        // An absolute time must carry its zone (Z or an offset): a local time would name the wrong moment.
        if (Absolute().IsMatch(text) && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
        {
            query = PointQuery.AtTime(time.ToUniversalTime());
            return true;
        }
        return false;
    }

    /// <summary>A time only (<c>--at</c>, <c>"at"</c>): ISO-8601 with its zone, or relative to now; a generation is not one.</summary>
    public static bool TryParseTime(string text, out PointQuery? query)
    {
        if (TryParse(text, DateTimeOffset.UtcNow, out query) && query!.Time is not null) return true;
        query = null;
        return false;
    }

    /// <summary>What is wrong with a time that <see cref="TryParseTime"/> refused, for the option or field <paramref name="name"/>.</summary>
    public static string TimeError(string name, string text) =>
        $"{name} '{text}' is not a time: use an ISO-8601 UTC time such as 2026-12-04T10:42:07Z, or a relative one such as -90s, -5m, -2h";

    /// <summary>True when a snapshot name could be read as a point (a relative time): such names are refused.</summary>
    public static bool LooksLikePoint(string name) => Relative().IsMatch(name) || name.StartsWith("gen:", StringComparison.Ordinal);

    public const string Forms = "gen:N, an ISO-8601 UTC time such as 2026-12-04T10:42:07Z, or a time relative to now such as -90s, -5m, -2h";
}
