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
    public static string Fields => "name, size, mode, backing, readOnly, replicas, protocol";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? Name { get; init; }
    /// <summary>Bytes, or a string with a unit (<c>"10G"</c>).</summary>
    [JsonConverter(typeof(SizeJsonConverter))]
    public long? Size { get; init; }
    public string? Mode { get; init; }
    public string? Backing { get; init; }
    public bool ReadOnly { get; init; }
    /// <summary>A replicated volume: its nodes, the primary first (2 or 3).</summary>
    public IReadOnlyList<string>? Replicas { get; init; }
    /// <summary>With replicas: "A", "B" or "C" (the default).</summary>
    public string? Protocol { get; init; }
}

/// <summary><c>POST /api/volumes/NAME/promote</c>: make <c>node</c> (default: the node asked) the primary.</summary>
public sealed record PromoteRequest : IApiRequest
{
    public static string Fields => "node, force";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? Node { get; init; }
    public bool Force { get; init; }
}

/// <summary><c>POST /api/volumes/NAME/demote</c>: the primary (<c>node</c>, default: the current one) becomes a secondary.</summary>
public sealed record DemoteRequest : IApiRequest
{
    public static string Fields => "node";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? Node { get; init; }
}

/// <summary><c>POST /api/volumes/NAME/protocol</c>.</summary>
public sealed record ProtocolRequest : IApiRequest
{
    public static string Fields => "protocol";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? Protocol { get; init; }
}

/// <summary><c>POST /api/volumes/NAME/resync-rate</c>: bytes per second per peer, or a size string ("100M"); 0: no limit.</summary>
public sealed record ResyncRateRequest : IApiRequest
{
    public static string Fields => "rate";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    [JsonConverter(typeof(SizeJsonConverter))]
    public long? Rate { get; init; }
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

/// <summary>
/// <c>POST /api/snapshots</c>: snapshot NAME of one or more volumes, at a point (<c>at</c>: an ISO-8601
/// UTC or relative time; <c>generation</c>) or, with neither, now (one FLUSH barrier across the volumes).
/// </summary>
public sealed record CreateSnapshotRequest : IApiRequest
{
    public static string Fields => "volumes, name, at, generation";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public IReadOnlyList<string>? Volumes { get; init; }
    public string? Name { get; init; }
    public string? At { get; init; }
    public long? Generation { get; init; }
}

/// <summary><c>POST /api/volumes/NAME/revert</c>: back to a snapshot (<c>to</c>), a generation or a time (<c>at</c>); exactly one.</summary>
public sealed record RevertRequest : IApiRequest
{
    public static string Fields => "to, generation, at";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? To { get; init; }
    public long? Generation { get; init; }
    public string? At { get; init; }
}

/// <summary><c>POST /api/snapshots/VOL/NAME/clone</c>: a new writable volume starting as the snapshot.</summary>
public sealed record CloneRequest : IApiRequest
{
    public static string Fields => "name, mode, independent";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    public string? Name { get; init; }
    public string? Mode { get; init; }
    /// <summary>Also copy the snapshot's data in the background, after which the clone no longer needs it.</summary>
    public bool Independent { get; init; }
}
