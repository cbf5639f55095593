using System.Text.Json;
using System.Text.Json.Serialization;

namespace ActorCache.Admin.Api;

/// <summary>A request body: the fields it takes, and any it does not (refused with a 400 naming them, so a typo is not silently ignored).</summary>
public interface IApiRequest
{
    static abstract string Fields { get; }
    Dictionary<string, JsonElement>? Unknown { get; }
}

/// <summary><c>POST /api/volumes</c>: a volume like <c>serve --volume NAME:SIZE[:MODE][:backing=PATH][:read-only]</c>.</summary>
public sealed record CreateVolumeRequest : IApiRequest
{
    public static string Fields => "name, size, mode, backing, readOnly";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? Name { get; init; }
    /// <summary>Bytes, or a string with a unit (<c>"10G"</c>).</summary>
    [JsonConverter(typeof(SizeJsonConverter))]
    public long? Size { get; init; }
    public string? Mode { get; init; }
    public string? Backing { get; init; }
    public bool ReadOnly { get; init; }
}

/// <summary><c>POST /api/volumes/NAME/resize</c>.</summary>
public sealed record ResizeVolumeRequest : IApiRequest
{
    public static string Fields => "size";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    [JsonConverter(typeof(SizeJsonConverter))]
    public long? Size { get; init; }
}

/// <summary><c>POST /api/volumes/NAME/mode</c>.</summary>
public sealed record SetModeRequest : IApiRequest
{
    public static string Fields => "mode";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? Mode { get; init; }
}

/// <summary>Every error the API answers: one line saying what happened and what to do.</summary>
public sealed record ApiError(string Error);
