using System.Text.Json;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace ActorCache.Integration.Tests;

/// <summary>The repository's k8s/ base as <c>kubectl kustomize k8s/</c> renders it, one JSON object per resource.</summary>
public static class KubernetesManifests
{
    public static string RepositoryRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ActorCache.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("cannot find the repository root above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Runs kubectl kustomize on <paramref name="dir"/> (default: the repository's k8s/) and returns its YAML.</summary>
    public static async Task<string> RenderAsync(string? dir = null)
    {
        var result = await Tool.RunAsync("kubectl", ["kustomize", dir ?? Path.Combine(RepositoryRoot, "k8s")], TimeSpan.FromMinutes(2));
        if (result.ExitCode != 0) throw new Xunit.Sdk.XunitException($"kubectl kustomize failed ({result.ExitCode}):\n{result.Output}");
        return result.Stdout;
    }

    /// <summary>Every document of a multi-document YAML stream, as JSON (every scalar a string).</summary>
    public static List<JsonObject> Parse(string yaml)
    {
        var deserializer = new DeserializerBuilder().Build();
        var parser = new Parser(new StringReader(yaml));
        parser.Consume<StreamStart>();
        var documents = new List<JsonObject>();
        while (parser.Accept<DocumentStart>(out _))
        {
            var document = deserializer.Deserialize<object?>(parser);
            if (document is not null) documents.Add((JsonObject)ToJson(document)!);
        }
        return documents;
    }

    private static JsonNode? ToJson(object? value) => value switch
    {
        null => null,
        IDictionary<object, object?> map => new JsonObject(map.Select(kv => KeyValuePair.Create(kv.Key.ToString()!, ToJson(kv.Value)))),
        IList<object?> list => new JsonArray([.. list.Select(ToJson)]),
        string s => JsonValue.Create(s),
        bool b => JsonValue.Create(b),
        int i => JsonValue.Create(i),
        long l => JsonValue.Create(l),
        double d => JsonValue.Create(d),
        _ => JsonValue.Create(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)),
    };

    public static JsonObject Single(List<JsonObject> documents, string kind) =>
        documents.Single(d => d["kind"]!.GetValue<string>() == kind);

    public static string Text(this JsonNode? node) => node switch
    {
        null => "",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => node.ToJsonString(),
    };
}
