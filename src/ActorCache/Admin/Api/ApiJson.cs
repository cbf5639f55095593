using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ActorCache.Admin.Api;

/// <summary>
/// The admin API's JSON, shared by the node and the command line: camelCase names, nulls written (a
/// field is always there), source-generated so both read and write exactly these types.
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(VolumeInfo))]
[JsonSerializable(typeof(VolumeListing))]
[JsonSerializable(typeof(DeletedVolume))]
[JsonSerializable(typeof(CreateVolumeRequest))]
[JsonSerializable(typeof(ResizeVolumeRequest))]
[JsonSerializable(typeof(SetModeRequest))]
[JsonSerializable(typeof(OperationInfo))]
[JsonSerializable(typeof(IReadOnlyList<OperationInfo>))]
[JsonSerializable(typeof(ApiError))]
[JsonSerializable(typeof(IReadOnlyList<HistoryPoint>))]
[JsonSerializable(typeof(SnapshotInfo))]
[JsonSerializable(typeof(IReadOnlyList<SnapshotInfo>))]
[JsonSerializable(typeof(IReadOnlyList<ChangedRangeInfo>))]
[JsonSerializable(typeof(CreateSnapshotRequest))]
[JsonSerializable(typeof(RevertRequest))]
[JsonSerializable(typeof(CloneRequest))]
[JsonSerializable(typeof(MemberInfo))]
[JsonSerializable(typeof(IReadOnlyList<MemberInfo>))]
[JsonSerializable(typeof(ClusterMemberRequest))]
[JsonSerializable(typeof(IReadOnlyList<ActorInfo>))]
[JsonSerializable(typeof(IReadOnlyList<ShardRegionInfo>))]
[JsonSerializable(typeof(TopFrame))]
[JsonSerializable(typeof(PromoteRequest))]
[JsonSerializable(typeof(DemoteRequest))]
[JsonSerializable(typeof(ProtocolRequest))]
[JsonSerializable(typeof(ResyncRateRequest))]
[JsonSerializable(typeof(IReadOnlyList<PeerInfo>))]
public sealed partial class ApiJson : JsonSerializerContext
{
    private static ApiJson? _wire, _indented;

    /// <summary>What the node answers and the command line reads: text as written (no \u0027 for a quote in a message).</summary>
    public static ApiJson Wire => _wire ??= new ApiJson(new JsonSerializerOptions(Default.Options) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    /// <summary>The same, indented: what <c>--json</c> prints. (Both made on first use: static initialisers of a partial class run in no promised order.)</summary>
    public static ApiJson Indented => _indented ??= new ApiJson(new JsonSerializerOptions(Wire.Options) { WriteIndented = true });
}
