using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using ActorCache.Admin.Api;

namespace ActorCache.Cli;

/// <summary>
/// The command line's one way to a node: typed calls to its admin API, one per endpoint, and every
/// failure (unreachable, refused, an error the node names) turned into a <see cref="CliFailure"/> that
/// says what happened in one line.
/// </summary>
public sealed class AdminClient : IDisposable
{
    /// <summary>Generous: deleting a volume whose backing is kept drains its log to it first, as long as that takes.</summary>
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(10);
    private readonly HttpClient _http;
    private readonly NodeTarget _target;

    public AdminClient(NodeTarget target, TimeSpan? timeout = null)
    {
        _target = target;
        _http = new HttpClient { BaseAddress = target.Url, Timeout = timeout ?? DefaultTimeout };
        if (target.Token is not null) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", target.Token);
    }

    public Uri Node => _target.Url;

    // ---- volumes ------------------------------------------------------------------------------

    public Task<VolumeListing> ListVolumesAsync(CancellationToken ct) =>
        SendAsync(HttpMethod.Get, "api/volumes", null, ApiJson.Wire.VolumeListing, ct);

    public Task<VolumeInfo> GetVolumeAsync(string name, CancellationToken ct) =>
        SendAsync(HttpMethod.Get, $"api/volumes/{Escape(name)}", null, ApiJson.Wire.VolumeInfo, ct);

    public Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, "api/volumes", Body(request, ApiJson.Wire.CreateVolumeRequest), ApiJson.Wire.VolumeInfo, ct);

    public Task<DeletedVolume> DeleteVolumeAsync(string name, bool force, CancellationToken ct) =>
        SendAsync(HttpMethod.Delete, $"api/volumes/{Escape(name)}{(force ? "?force=true" : "")}", null, ApiJson.Wire.DeletedVolume, ct);

    public Task<VolumeInfo> ResizeVolumeAsync(string name, long size, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(name)}/resize", Body(new ResizeVolumeRequest { Size = size }, ApiJson.Wire.ResizeVolumeRequest),
            ApiJson.Wire.VolumeInfo, ct);

    /// <summary>Starts a mode switch and returns at once with the operation to follow (<see cref="GetOperationAsync"/>).</summary>
    public Task<OperationInfo> StartModeSwitchAsync(string name, string mode, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(name)}/mode?wait=false", Body(new SetModeRequest { Mode = mode }, ApiJson.Wire.SetModeRequest),
            ApiJson.Wire.OperationInfo, ct);

    public Task<IReadOnlyList<HistoryPoint>> GetHistoryAsync(string name, CancellationToken ct) =>
        SendAsync(HttpMethod.Get, $"api/volumes/{Escape(name)}/history", null, ApiJson.Wire.IReadOnlyListHistoryPoint, ct);

    /// <summary>Starts a revert and returns at once with the operation to follow.</summary>
    public Task<OperationInfo> StartRevertAsync(string name, RevertRequest request, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(name)}/revert?wait=false", Body(request, ApiJson.Wire.RevertRequest), ApiJson.Wire.OperationInfo, ct);

    // ---- snapshots ----------------------------------------------------------------------------

    public Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? volume, CancellationToken ct) =>
        SendAsync(HttpMethod.Get, volume is null ? "api/snapshots" : $"api/snapshots?volume={Escape(volume)}", null, ApiJson.Wire.IReadOnlyListSnapshotInfo, ct);

    public Task<IReadOnlyList<SnapshotInfo>> CreateSnapshotAsync(CreateSnapshotRequest request, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, "api/snapshots", Body(request, ApiJson.Wire.CreateSnapshotRequest), ApiJson.Wire.IReadOnlyListSnapshotInfo, ct);

    public Task<SnapshotInfo> DeleteSnapshotAsync(string volume, string name, CancellationToken ct) =>
        SendAsync(HttpMethod.Delete, $"api/snapshots/{Escape(volume)}/{Escape(name)}", null, ApiJson.Wire.SnapshotInfo, ct);

    public Task<IReadOnlyList<ChangedRangeInfo>> DiffAsync(string from, string to, CancellationToken ct) =>
        SendAsync(HttpMethod.Get, $"api/diff?from={Escape(from)}&to={Escape(to)}", null, ApiJson.Wire.IReadOnlyListChangedRangeInfo, ct);

    /// <summary>Creates a clone; with <see cref="CloneRequest.Independent"/> the answer is the copy's operation to follow, else the new volume.</summary>
    public Task<OperationInfo> StartCloneAsync(string volume, string snapshot, CloneRequest request, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/snapshots/{Escape(volume)}/{Escape(snapshot)}/clone?wait=false", Body(request, ApiJson.Wire.CloneRequest),
            ApiJson.Wire.OperationInfo, ct);

    // ---- cluster ------------------------------------------------------------------------------

    public Task<IReadOnlyList<MemberInfo>> ListMembersAsync(CancellationToken ct) =>
        SendAsync(HttpMethod.Get, "api/cluster", null, ApiJson.Wire.IReadOnlyListMemberInfo, ct);

    /// <summary>Asks a member (<paramref name="node"/>, or the node itself when null) to leave the cluster.</summary>
    public Task<MemberInfo> LeaveAsync(string? node, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, "api/cluster/leave", Body(new ClusterMemberRequest { Node = node }, ApiJson.Wire.ClusterMemberRequest), ApiJson.Wire.MemberInfo, ct);

    public Task<MemberInfo> DownAsync(string node, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, "api/cluster/down", Body(new ClusterMemberRequest { Node = node }, ApiJson.Wire.ClusterMemberRequest), ApiJson.Wire.MemberInfo, ct);

    // ---- replication --------------------------------------------------------------------------

    public Task<IReadOnlyList<PeerInfo>> GetPeersAsync(string volume, CancellationToken ct) =>
        SendAsync(HttpMethod.Get, $"api/volumes/{Escape(volume)}/peers", null, ApiJson.Wire.IReadOnlyListPeerInfo, ct);

    public Task<VolumeInfo> PromoteAsync(string volume, string? node, bool force, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(volume)}/promote", Body(new PromoteRequest { Node = node, Force = force }, ApiJson.Wire.PromoteRequest),
            ApiJson.Wire.VolumeInfo, ct);

    public Task<VolumeInfo> DemoteAsync(string volume, string? node, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(volume)}/demote", Body(new DemoteRequest { Node = node }, ApiJson.Wire.DemoteRequest), ApiJson.Wire.VolumeInfo, ct);

    public Task<OperationInfo> StartVerifyAsync(string volume, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(volume)}/verify?wait=false", null, ApiJson.Wire.OperationInfo, ct);

    public Task<IReadOnlyList<PeerInfo>> ResyncAsync(string volume, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(volume)}/resync", null, ApiJson.Wire.IReadOnlyListPeerInfo, ct);

    public Task<VolumeInfo> DiscardMyDataAsync(string volume, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(volume)}/discard-my-data", null, ApiJson.Wire.VolumeInfo, ct);

    public Task<VolumeInfo> SetProtocolAsync(string volume, string protocol, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(volume)}/protocol", Body(new ProtocolRequest { Protocol = protocol }, ApiJson.Wire.ProtocolRequest),
            ApiJson.Wire.VolumeInfo, ct);

    public Task<VolumeInfo> SetResyncRateAsync(string volume, long rate, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/volumes/{Escape(volume)}/resync-rate", Body(new ResyncRateRequest { Rate = rate }, ApiJson.Wire.ResyncRateRequest),
            ApiJson.Wire.VolumeInfo, ct);

    // ---- actors -------------------------------------------------------------------------------

    /// <summary>The actor hierarchy from /user (and /system), <paramref name="depth"/> levels below them (null: all).</summary>
    public Task<IReadOnlyList<ShardRegionInfo>> GetShardingAsync(CancellationToken ct) =>
        SendAsync(HttpMethod.Get, "api/sharding", null, ApiJson.Wire.IReadOnlyListShardRegionInfo, ct);

    public Task<IReadOnlyList<ActorInfo>> GetActorsAsync(int? depth, bool system, CancellationToken ct) =>
        SendAsync(HttpMethod.Get, $"api/actors?system={(system ? "true" : "false")}{(depth is { } d ? $"&depth={d}" : "")}", null,
            ApiJson.Wire.IReadOnlyListActorInfo, ct);

    // ---- metrics ------------------------------------------------------------------------------

    /// <summary>The node's <c>/metrics</c>, parsed: what Prometheus scrapes, so <c>top</c> shows what a dashboard shows.</summary>
    public async Task<MetricsSample> GetMetricsAsync(CancellationToken ct)
    {
        var (_, text) = await ExchangeAsync(HttpMethod.Get, "metrics", null, ct);
        return MetricsSample.Parse(text);
    }

    // ---- operations ---------------------------------------------------------------------------

    public Task<OperationInfo> GetOperationAsync(string id, CancellationToken ct) =>
        SendAsync(HttpMethod.Get, $"api/operations/{Escape(id)}", null, ApiJson.Wire.OperationInfo, ct);

    // ---- the wire -----------------------------------------------------------------------------

    private static string Escape(string segment) => Uri.EscapeDataString(segment);

    private static HttpContent Body<T>(T request, JsonTypeInfo<T> type) =>
        new StringContent(JsonSerializer.Serialize(request, type), System.Text.Encoding.UTF8, "application/json");

    private async Task<T> SendAsync<T>(HttpMethod method, string path, HttpContent? content, JsonTypeInfo<T> type, CancellationToken ct)
    {
        var (status, text) = await ExchangeAsync(method, path, content, ct);
        try
        {
            return JsonSerializer.Deserialize(text, type) ?? throw new JsonException("null");
        }
        catch (JsonException)
        {
            throw new CliFailure($"{Node} answered {(int)status} with something other than the admin API's JSON; is --node an ActorCache node's admin URL?");
        }
    }

    /// <summary>One request: the status and body of a success, or a <see cref="CliFailure"/> saying why not.</summary>
    private async Task<(HttpStatusCode Status, string Body)> ExchangeAsync(HttpMethod method, string path, HttpContent? content, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        HttpResponseMessage response;
        string text;
        try
        {
            response = await _http.SendAsync(request, ct);
            text = await response.Content.ReadAsStringAsync(ct);
        }
        catch (HttpRequestException e)
        {
            throw new CliFailure($"cannot reach the node at {Node}: {Reason(e)} (is a node running there?)");
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new CliFailure($"the node at {Node} did not answer within {_http.Timeout.TotalSeconds:0} s");
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode) throw new CliFailure(Refusal(response.StatusCode, text));
            return (response.StatusCode, text);
        }
    }

    private string Refusal(HttpStatusCode status, string body)
    {
        string? error = null;
        try
        {
            error = JsonSerializer.Deserialize(body, ApiJson.Wire.ApiError)?.Error;
        }
        catch (JsonException)
        {
            // not the API's error shape: say what came back instead
        }
        error ??= $"{(int)status} {status}{(body.Length > 0 ? $": {body.ReplaceLineEndings(" ")[..Math.Min(body.Length, 200)]}" : "")}";
        return status switch
        {
            HttpStatusCode.Unauthorized => $"the node refused: {error} ({_target.TokenNote})",
            >= HttpStatusCode.InternalServerError => $"the node failed: {error}",
            _ => error,
        };
    }

    private static string Reason(HttpRequestException e) =>
        e.InnerException is SocketException socket ? socket.Message : e.Message;

    public void Dispose() => _http.Dispose();
}
