using Akka.Configuration;
using Akka.Configuration.Hocon;
using ActorCache.Hosting;

namespace ActorCache.Configuration;

/// <summary>
/// Parses HOCON strictly enough to refuse what is not HOCON. Akka's parser accepts almost anything
/// (an unclosed brace, a stray one, <c>{{{{ ::: }</c>, a key without a value) and quietly drops what it
/// cannot read, so the text is checked for balanced braces, brackets and quotes first, and the parsed
/// tree for keys that ended up without a value.
/// </summary>
public static class HoconText
{
    /// <summary>The parsed configuration, or a <see cref="SettingsException"/> saying where <paramref name="origin"/> is broken.</summary>
    public static Config Parse(string text, string origin)
    {
        if (FindSyntaxError(text) is { } syntax) throw new SettingsException($"{origin} is not valid HOCON: {syntax}");
        Config config;
        try
        {
            config = ConfigurationFactory.ParseString(text);
        }
        catch (Exception e)
        {
            throw new SettingsException($"{origin} is not valid HOCON: {string.Join(' ', e.Message.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries))}");
        }
        if (config.Root is null || config.IsEmpty)
        {
            if (HasContent(text)) throw new SettingsException($"{origin} is not valid HOCON: no setting could be read from it");
            return config;
        }
        foreach (var (path, value) in Leaves(config.Root))
            if (value.Values.Count == 0) throw new SettingsException($"{origin} is not valid HOCON: {path} has no value (write {path} = VALUE)");
        return config;
    }

    /// <summary>Every leaf of the tree with its dotted path: values, lists, and empty blocks.</summary>
    public static IEnumerable<(string Path, HoconValue Value)> Leaves(HoconValue root, string prefix = "")
    {
        if (!IsBlock(root))
        {
            yield return (prefix, root);
            yield break;
        }
        var items = root.GetObject().Items;
        if (items.Count == 0 && prefix.Length > 0) yield return (prefix, root);
        foreach (var (key, value) in items)
            foreach (var leaf in Leaves(value, prefix.Length == 0 ? key : $"{prefix}.{key}"))
                yield return leaf;
    }

    /// <summary>A block <c>{ ... }</c>. Asked of the elements rather than with IsObject(), which recurses forever on an unresolved optional substitution.</summary>
    public static bool IsBlock(HoconValue value) => value.Values.Count > 0 && value.Values.All(e => e is HoconObject);

    /// <summary>A list <c>[ ... ]</c>, empty ones included (IsArray() says false for those).</summary>
    public static bool IsList(HoconValue value) => value.Values.Count > 0 && value.Values.All(e => e is HoconArray);

    /// <summary>The first place where braces, brackets or quotes do not pair up, or null.</summary>
    public static string? FindSyntaxError(string text)
    {
        var open = new Stack<(char Bracket, int Line)>();
        var line = 1;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            switch (c)
            {
                case '\n':
                    line++;
                    break;
                case '#':
                case '/' when i + 1 < text.Length && text[i + 1] == '/':
                    while (i + 1 < text.Length && text[i + 1] != '\n') i++;
                    break;
                case '"' when string.CompareOrdinal(text, i, "\"\"\"", 0, 3) == 0:
                {
                    var end = text.IndexOf("\"\"\"", i + 3, StringComparison.Ordinal);
                    if (end < 0) return $"the \"\"\" string opened on line {line} is never closed";
                    line += text.AsSpan(i, end - i).Count('\n');
                    i = end + 2;
                    while (i + 1 < text.Length && text[i + 1] == '"') i++; // a """ string may end in extra quotes
                    break;
                }
                case '"':
                {
                    var start = line;
                    for (i++; ; i++)
                    {
                        if (i >= text.Length || text[i] == '\n') return $"the string opened on line {start} is never closed";
                        if (text[i] == '\\') i++;
                        else if (text[i] == '"') break;
                    }
                    break;
                }
                case '$' when i + 1 < text.Length && text[i + 1] == '{':
                {
                    var end = text.IndexOf('}', i);
                    var newline = text.IndexOf('\n', i);
                    if (end < 0 || (newline >= 0 && newline < end)) return $"the substitution ${{...}} on line {line} is never closed";
                    i = end;
                    break;
                }
                case '{' or '[':
                    open.Push((c, line));
                    break;
                case '}' or ']':
                    if (open.Count == 0) return $"'{c}' on line {line} closes nothing";
                    var (bracket, openedOn) = open.Pop();
                    if (bracket != (c == '}' ? '{' : '['))
                        return $"'{c}' on line {line} does not match the '{bracket}' opened on line {openedOn}";
                    break;
            }
        }
        return open.Count > 0 ? $"the '{open.Peek().Bracket}' opened on line {open.Peek().Line} is never closed" : null;
    }

    /// <summary>Anything but white space and comments.</summary>
    private static bool HasContent(string text) =>
        text.Split('\n').Select(l => l.Trim()).Any(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith("//", StringComparison.Ordinal));
}
