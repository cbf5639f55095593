using System.Text.Json;
using System.Text.Json.Serialization;

namespace ActorCache.Admin.Api;

/// <summary>
/// A member of the node's cluster as <c>GET /api/cluster</c> and <c>actorcache cluster show --json</c> show
/// it. The field names are a promise to scripts (documented in the README): fields may be added, never
/// renamed or removed.
/// </summary>
public sealed record MemberInfo
{
    /// <summary>The member's node name (<c>serve --node-name</c>); its address when it has none (not an ActorCache node).</summary>
    public required string Node { get; init; }
    /// <summary>Its Akka address, <c>akka.tcp://actorcache@HOST:PORT</c>.</summary>
    public required string Address { get; init; }
    /// <summary>Akka's member status: <c>Joining</c>, <c>WeaklyUp</c>, <c>Up</c>, <c>Leaving</c>, <c>Exiting</c>, <c>Down</c>, <c>Removed</c>; <c>NotJoined</c> for the node asked when no cluster has accepted it yet.</summary>
    public required string Status { get; init; }
    /// <summary>Whether the node asked can reach it (Akka's failure detector).</summary>
    public required bool Reachable { get; init; }
    /// <summary>Its cluster roles (<c>storage</c>), without the one that carries its name.</summary>
    public required IReadOnlyList<string> Roles { get; init; }
    /// <summary>The cluster's leader (it moves members between states).</summary>
    public required bool Leader { get; init; }
    /// <summary>The node that answered the request.</summary>
    public required bool Self { get; init; }
    /// <summary>The volumes it serves; empty when it is unreachable or did not answer in time (see <see cref="VolumesKnown"/>).</summary>
    public required IReadOnlyList<string> Volumes { get; init; }
    /// <summary>Whether <see cref="Volumes"/> is its answer (false: unreachable, or no answer within 2 s).</summary>
    public required bool VolumesKnown { get; init; }
    /// <summary>Only in the answer to a leave: what became of each volume the leaving member was primary of.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<HandOffInfo>? HandOffs { get; init; }
}

/// <summary>A volume the leaving member was primary of: handed to <see cref="To"/>, or kept there for <see cref="Problem"/>.</summary>
public sealed record HandOffInfo
{
    public required string Volume { get; init; }
    /// <summary>The node that is its primary now; null when the hand-off did not happen.</summary>
    public string? To { get; init; }
    /// <summary>Why it stayed on the leaving member (no peer held all its data in time), or null.</summary>
    public string? Problem { get; init; }
}

/// <summary><c>POST /api/cluster/leave</c> (node: optional, this node when left out) and <c>POST /api/cluster/down</c>.</summary>
public sealed record ClusterMemberRequest : IApiRequest
{
    public static string Fields => "node";
    [JsonExtensionData] public Dictionary<string, JsonElement>? Unknown { get; set; }
    /// <summary>A member's node name or address (HOST:PORT or akka.tcp://actorcache@HOST:PORT).</summary>
    public string? Node { get; init; }
}
