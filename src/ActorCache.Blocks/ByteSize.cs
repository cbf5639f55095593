using System.Globalization;

namespace ActorCache.Blocks;

/// <summary>Sizes as users write them: <c>4096</c>, <c>512K</c>, <c>512M</c>, <c>10G</c>, <c>1T</c> (binary units; a trailing B or iB is allowed).</summary>
public static class ByteSize
{
    /// <summary>Parses a size; zero only with <paramref name="allowZero"/> (a rate, where 0 means no limit).</summary>
    public static bool TryParse(string? text, out long bytes, out string error, bool allowZero = false)
    {
        bytes = 0;
        error = "";
        var s = (text ?? "").Trim();
        if (s.Length == 0) { error = "size is empty"; return false; }
        if (s.EndsWith("iB", StringComparison.OrdinalIgnoreCase)) s = s[..^2];
        else if (s.EndsWith('B') || s.EndsWith('b')) s = s[..^1];
        long unit = 1;
        if (s.Length > 0 && char.IsLetter(s[^1]))
        {
            unit = char.ToUpperInvariant(s[^1]) switch
            {
                'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, 'T' => 1L << 40, 'P' => 1L << 50, _ => 0,
            };
            if (unit == 0)
            {
                error = long.TryParse(s[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out _)
                    ? $"'{text}' has an unknown unit; use K, M, G, T or P"
                    : $"'{text}' is not a size; write a whole number with an optional unit, e.g. 512M or 10G";
                return false;
            }
            s = s[..^1];
        }
        if (!long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var count))
        {
            error = $"'{text}' is not a size; write a whole number with an optional unit, e.g. 512M or 10G";
            return false;
        }
        if (count == 0 && !allowZero) { error = "size must be greater than zero"; return false; }
        if (count > long.MaxValue / unit) { error = $"'{text}' is too large"; return false; }
        bytes = count * unit;
        return true;
    }

    public static long Parse(string text) =>
        TryParse(text, out var bytes, out var error) ? bytes : throw new FormatException(error);

    /// <summary>The shortest exact form: 1G rather than 1073741824.</summary>
    public static string Format(long bytes)
    {
        ReadOnlySpan<(long Unit, char Suffix)> units = [(1L << 40, 'T'), (1L << 30, 'G'), (1L << 20, 'M'), (1L << 10, 'K')];
        foreach (var (unit, suffix) in units)
            if (bytes >= unit && bytes % unit == 0) return $"{bytes / unit}{suffix}";
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
