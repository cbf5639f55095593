using ActorCache.Admin.Api;
using ActorCache.Volumes;
using Akka.Actor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace ActorCache.Admin;

/// <summary>
/// <c>/api/volumes</c>: list, show, create, delete, grow and switch the mode of the node's volumes while
/// it runs. Reading is open like /metrics; every change needs the admin token. The handlers only
/// translate HTTP to the classes and actors that own the volumes.
/// </summary>
public static class VolumeEndpoints
{
    private static readonly TimeSpan GrowTimeout = TimeSpan.FromSeconds(60);

    public static void Map(RouteGroupBuilder api)
    {
        var volumes = api.MapGroup("/volumes");
        volumes.MapGet("", async (VolumeInfoReader reader, CancellationToken ct) =>
            Results.Json(new VolumeListing(await reader.ListAsync(ct)), ApiJson.Wire.VolumeListing));

        volumes.MapGet("/{name}", async (string name, VolumeInfoReader reader, CancellationToken ct) =>
            Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo));

        volumes.MapPost("", async (HttpRequest request, VolumeCreation creation, VolumeInfoReader reader, CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.CreateVolumeRequest);
            if (string.IsNullOrEmpty(body.Name)) throw new BadApiRequestException("name is required, e.g. {\"name\": \"vol1\", \"size\": \"10G\"}");
            if (body.Size is not { } size) throw new BadApiRequestException($"size is required, e.g. {{\"name\": \"{body.Name}\", \"size\": \"10G\"}}");
            if (!VolumeSpec.TryCreate(body.Name, size, body.Mode, body.Backing, body.ReadOnly, out var spec, out var error)) throw new BadApiRequestException(error);
            if (body.Replicas is not null || body.Protocol is not null)
            {
                if (!ActorCache.Replicas.ReplicaSet.TryParseNodes(string.Join(",", body.Replicas ?? []), out var nodes, out error)) throw new BadApiRequestException(error);
                if (!ActorCache.Replicas.ReplicaSet.TryParseProtocol(body.Protocol, out var protocol, out error)) throw new BadApiRequestException(error);
                var replicated = request.HttpContext.RequestServices.GetRequiredService<ActorCache.Replicas.ReplicatedVolumes>();
                var made = await replicated.CreateAsync(spec!, nodes, protocol, ct);
                return Results.Json(await reader.GetAsync(made.Name, ct), ApiJson.Wire.VolumeInfo, statusCode: StatusCodes.Status201Created);
            }
            var created = await creation.CreateAsync(spec!, ct);
            return Results.Json(await reader.GetAsync(created.Name, ct), ApiJson.Wire.VolumeInfo, statusCode: StatusCodes.Status201Created);
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapDelete("/{name}", async (string name, string? force, VolumeDeletion deletion, CancellationToken ct) =>
        {
            var deleted = await deletion.DeleteAsync(name, Flag("force", force), ct);
            return Results.Json(new DeletedVolume(deleted.Name, deleted.Backing, deleted.BackingRemoved, deleted.ClientsClosed), ApiJson.Wire.DeletedVolume);
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapPost("/{name}/resize", async (string name, HttpRequest request, NodeVolumes running, VolumeInfoReader reader, CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.ResizeVolumeRequest);
            if (body.Size is not { } size) throw new BadApiRequestException("size is required, e.g. {\"size\": \"20G\"}");
            if (!VolumeSpec.TryCheckSize(name, size, size.ToString(System.Globalization.CultureInfo.InvariantCulture), out var error))
                throw new BadApiRequestException(error);
            running.ThrowIfRecovering(name);
            await running.ChangeAsync(async () =>
            {
                var volume = running.Find(name) ?? throw new VolumeNotFoundException(name);
                await VolumeStatusReader.ThrowIfSwitchingAsync(running, name, ct);
                var reply = await volume.Actor.Ask<object>(new GrowVolume(size), GrowTimeout, ct);
                return reply is VolumeGrowRejected rejected ? throw new VolumeConflictException(rejected.Reason) : reply;
            }, ct);
            return Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo);
        }).AddEndpointFilter<RequireAdminToken>();

        // Waits for the switch unless ?wait=false: then 202 and the operation to poll (the command line draws its progress).
        volumes.MapPost("/{name}/mode", async (string name, string? wait, HttpRequest request, VolumeModeSwitch modes, VolumeInfoReader reader,
            CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.SetModeRequest);
            if (body.Mode is null) throw new BadApiRequestException("mode is required, e.g. {\"mode\": \"write-through\"}");
            if (!VolumeSpec.TryParseMode(body.Mode, out var mode, out var error)) throw new BadApiRequestException(error);
            var waits = Waits(wait); // a bad flag is refused before anything starts
            var operation = await modes.StartAsync(name, mode, ct);
            if (!waits)
                return Results.Json(operation.Info(), ApiJson.Wire.OperationInfo, statusCode: StatusCodes.Status202Accepted);
            await operation.Completion.WaitAsync(ct);
            if (operation.Failure is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            return Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo);
        }).AddEndpointFilter<RequireAdminToken>();
    }

    /// <summary>Replicated volumes: promote, demote, protocol, resync rate, and the peers' status.</summary>
    public static void MapReplication(RouteGroupBuilder api)
    {
        var volumes = api.MapGroup("/volumes");
        volumes.MapGet("/{name}/peers", async (string name, ActorCache.Replicas.ReplicatedVolumes replicated, CancellationToken ct) =>
            Peers(await replicated.PeerStatusAsync(name, ct)));

        // Waits for the verify unless ?wait=false: then 202 and the operation to poll (the command line draws its progress).
        volumes.MapPost("/{name}/verify", async (string name, string? wait, ActorCache.Replicas.ReplicatedVolumes replicated, AdminOperations operations,
            CancellationToken ct) =>
        {
            // What differs is marked out of sync: peer status shows it afterwards (outOfSyncBytes), and the node's log per peer.
            var waits = Waits(wait);
            await replicated.VerifiedLinksAsync(name, ct); // a refusal (not its primary, no peer connected) is an answer, not a failed operation
            var operation = operations.Start("peer-verify", name, $"verify {name} against its peers", 0,
                op => replicated.VerifyAsync(name, op.Report, CancellationToken.None));
            if (!waits)
                return Results.Json(operation.Info(), ApiJson.Wire.OperationInfo, statusCode: StatusCodes.Status202Accepted);
            await operation.Completion.WaitAsync(ct);
            if (operation.Failure is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            return Results.Json(operation.Info(), ApiJson.Wire.OperationInfo);
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapPost("/{name}/resync", async (string name, ActorCache.Replicas.ReplicatedVolumes replicated, CancellationToken ct) =>
        {
            await replicated.ResyncAsync(name, ct);
            return Peers(await replicated.PeerStatusAsync(name, ct));
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapPost("/{name}/promote", async (string name, HttpRequest request, ActorCache.Replicas.ReplicatedVolumes replicated, VolumeInfoReader reader,
            CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.PromoteRequest);
            await replicated.PromoteAsync(name, body.Node, body.Force, ct);
            return Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo);
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapPost("/{name}/demote", async (string name, HttpRequest request, ActorCache.Replicas.ReplicatedVolumes replicated, VolumeInfoReader reader,
            CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.DemoteRequest);
            await replicated.DemoteAsync(name, body.Node, ct);
            return Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo);
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapPost("/{name}/discard-my-data", async (string name, ActorCache.Replicas.ReplicatedVolumes replicated, VolumeInfoReader reader,
            CancellationToken ct) =>
        {
            await replicated.DiscardMyDataAsync(name, ct);
            return Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo);
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapPost("/{name}/protocol", async (string name, HttpRequest request, ActorCache.Replicas.ReplicatedVolumes replicated, VolumeInfoReader reader,
            CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.ProtocolRequest);
            if (body.Protocol is null) throw new BadApiRequestException("protocol is required, e.g. {\"protocol\": \"C\"}");
            if (!ActorCache.Replicas.ReplicaSet.TryParseProtocol(body.Protocol, out var protocol, out var error)) throw new BadApiRequestException(error);
            await replicated.SwitchProtocolAsync(name, protocol, ct);
            return Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo);
        }).AddEndpointFilter<RequireAdminToken>();

        volumes.MapPost("/{name}/resync-rate", async (string name, HttpRequest request, ActorCache.Replicas.ReplicatedVolumes replicated, VolumeInfoReader reader,
            CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.ResyncRateRequest);
            if (body.Rate is not { } rate || rate < 0) throw new BadApiRequestException("rate is required: bytes per second, or \"100M\"; 0 for no limit");
            await replicated.SetResyncRateAsync(name, rate, ct);
            return Results.Json(await reader.GetAsync(name, ct), ApiJson.Wire.VolumeInfo);
        }).AddEndpointFilter<RequireAdminToken>();
    }

    private static IResult Peers(ActorCache.Replicas.PeerStatusList list) =>
        Results.Json(list.Peers.Select(p => new PeerInfo(p.Node, p.Role, p.Connection, p.Disk, p.OutOfSyncBytes,
            p.Resync is { } r ? new ResyncInfo(r.Done, r.Total, r.BytesPerSecond) : null, p.SplitBrain, p.LagBatches, p.LagBytes,
            p.AckP50Micros, p.AckP99Micros, p.Problem)).ToList() as IReadOnlyList<PeerInfo>, ApiJson.Wire.IReadOnlyListPeerInfo);

    /// <summary>Whether a long operation's request waits for it: yes unless <c>?wait=false</c> (then 202 and the operation to poll).</summary>
    internal static bool Waits(string? wait) => wait is null || Flag("wait", wait);

    /// <summary>A query flag: absent or <c>false</c> is false, <c>true</c> (or just <c>?force</c>) is true, anything else a 400.</summary>
    private static bool Flag(string name, string? value) => value?.ToLowerInvariant() switch
    {
        null or "false" or "0" => false,
        "" or "true" or "1" => true,
        _ => throw new BadApiRequestException($"?{name}={value}: use true or false"),
    };
}
