using System.Globalization;
using ActorCache.Blocks;
using ActorCache.Hosting;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace ActorCache.Configuration;

/// <summary>
/// Reads typed values under <c>actorcache</c> from the merged configuration. A value of the wrong kind
/// is refused with one line naming the key, the value and what is allowed, never an exception
/// from the HOCON library.
/// </summary>
public sealed class SettingsReader(Config config)
{
    public const string Root = "actorcache";

    private HoconValue Value(string key)
    {
        var value = config.GetValue($"{Root}.{key}");
        if (value is null || value.Values.Count == 0) throw new SettingsException($"{Root}.{key} is missing; hocon/actorcache.conf has its default");
        return value;
    }

    public string String(string key)
    {
        var value = Value(key);
        if (HoconText.IsBlock(value) || HoconText.IsList(value))
            throw new SettingsException($"{Root}.{key} must be a single value, e.g. {Root}.{key} = \"...\"");
        return value.GetString() ?? "";
    }

    public IReadOnlyList<string> StringList(string key, string example)
    {
        var value = Value(key);
        if (!HoconText.IsList(value)) throw new SettingsException($"{Root}.{key} = {Show(value)} must be a list, e.g. {Root}.{key} = [{example}]");
        var list = new List<string>();
        foreach (var item in value.GetArray())
        {
            if (HoconText.IsBlock(item) || HoconText.IsList(item))
                throw new SettingsException($"{Root}.{key} must be a list of strings, e.g. [{example}]");
            list.Add(item.GetString());
        }
        return list;
    }

    public int Int(string key, int min, int max)
    {
        var text = String(key);
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) || number < min || number > max)
            throw new SettingsException($"{Root}.{key} = {text} is not allowed; use a whole number from {min} to {max}");
        return number;
    }

    /// <summary>A number in (<paramref name="above"/>, <paramref name="max"/>].</summary>
    public double Fraction(string key, double above, double max)
    {
        var text = String(key);
        if (!TryParseNumber(text, out var number) || number <= above || number > max)
            throw new SettingsException($"{Root}.{key} = {text} is not allowed; use a number greater than {above} and at most {max}, e.g. 0.5");
        return number;
    }

    /// <summary>A number in [<paramref name="min"/>, <paramref name="max"/>]; <paramref name="meaning"/> says what the ends mean in the message.</summary>
    public double Number(string key, double min, double max, string meaning)
    {
        var text = String(key);
        if (!TryParseNumber(text, out var number) || number < min || number > max)
            throw new SettingsException($"{Root}.{key} = {text} is not allowed; use a number from {meaning}");
        return number;
    }

    /// <summary>A plain decimal number (not NaN or infinity, which parse whatever the number style says).</summary>
    private static bool TryParseNumber(string text, out double number) =>
        double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out number) && double.IsFinite(number);

    /// <summary>A duration such as <c>500ms</c>, <c>5s</c>, <c>2m</c> or <c>1h</c> (a bare number is milliseconds, as in Akka).</summary>
    public TimeSpan Duration(string key, TimeSpan min, string example)
    {
        var text = String(key);
        TimeSpan duration;
        try
        {
            duration = config.GetTimeSpan($"{Root}.{key}", allowInfinite: false);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException or ConfigurationException)
        {
            throw new SettingsException($"{Root}.{key} = {text} is not a duration; write a number with a unit (ms, s, m, h, d), e.g. {example}");
        }
        if (duration < min)
            throw new SettingsException($"{Root}.{key} = {text} is not allowed; it must be at least {Describe(min)}, e.g. {example}");
        return duration;
    }

    /// <summary>A size such as <c>64M</c> or <c>2G</c>, a multiple of 4 KiB and at least <paramref name="min"/>.</summary>
    public long Size(string key, long min)
    {
        var text = String(key);
        if (!ByteSize.TryParse(text, out var bytes, out var error))
            throw new SettingsException($"{Root}.{key} = {text} is not allowed: {error}");
        if (bytes < min || bytes % 4096 != 0)
            throw new SettingsException($"{Root}.{key} = {text} is not allowed; use a multiple of 4K of at least {ByteSize.Format(min)}");
        return bytes;
    }

    /// <summary>One of <paramref name="choices"/> (by name, as written in the file).</summary>
    public T Choice<T>(string key, params (string Name, T Value)[] choices)
    {
        var text = String(key);
        foreach (var (name, value) in choices)
            if (name == text) return value;
        throw new SettingsException($"{Root}.{key} = {text} is not allowed; use {string.Join(" or ", choices.Select(c => c.Name).Distinct())}");
    }

    private static string Describe(TimeSpan t) => t == TimeSpan.Zero ? "0" : t.TotalMilliseconds < 1000 ? $"{t.TotalMilliseconds:0}ms" : $"{t.TotalSeconds:0.###}s";

    private static string Show(HoconValue value) => HoconText.IsBlock(value) ? "{ ... }" : value.ToString();
}
