using System.Globalization;

namespace ActorCache.Cli;

/// <summary>Sizes for people, in the largest binary unit they reach: exact where they are (<c>1G</c>, <c>64M</c>), else one decimal (<c>8.0M</c>, <c>1.5G</c>).</summary>
public static class SizeText
{
    public static string Of(long bytes)
    {
        ReadOnlySpan<(long Unit, char Suffix)> units = [(1L << 50, 'P'), (1L << 40, 'T'), (1L << 30, 'G'), (1L << 20, 'M'), (1L << 10, 'K')];
        foreach (var (unit, suffix) in units)
        {
            if (bytes < unit) continue;
            return bytes % unit == 0
                ? (bytes / unit).ToString(CultureInfo.InvariantCulture) + suffix
                : (bytes / (double)unit).ToString("0.0", CultureInfo.InvariantCulture) + suffix;
        }
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
