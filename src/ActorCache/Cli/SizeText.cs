using System.Globalization;
using ActorCache.Blocks;

namespace ActorCache.Cli;

/// <summary>Sizes for people: exact binary units where they are exact (<c>1G</c>, <c>64M</c>), else one decimal (<c>8.2M</c>).</summary>
public static class SizeText
{
    public static string Of(long bytes)
    {
        if (bytes == 0) return "0";
        var exact = ByteSize.Format(bytes);
        if (!char.IsDigit(exact[^1]) || bytes < 1024) return exact;
        ReadOnlySpan<(long Unit, char Suffix)> units = [(1L << 40, 'T'), (1L << 30, 'G'), (1L << 20, 'M'), (1L << 10, 'K')];
        foreach (var (unit, suffix) in units)
            if (bytes >= unit) return (bytes / (double)unit).ToString("0.0", CultureInfo.InvariantCulture) + suffix;
        return exact;
    }
}
