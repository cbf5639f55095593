using ActorCache.Admin.Api;
using ActorCache.Cache;
using ActorCache.Snapshots;
using ActorCache.Volumes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace ActorCache.Admin;

/// <summary>
/// <c>/api/snapshots</c> and a volume's history: list, create, delete and diff snapshots after the fact
/// (DESIGN §3). Reading is open like /metrics; every change needs the admin token. The handlers only
/// translate HTTP to <see cref="SnapshotService"/>.
/// </summary>
public static class SnapshotEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapGet("/volumes/{name}/history", async (string name, SnapshotService snapshots, CancellationToken ct) =>
        {
            var points = await snapshots.HistoryAsync(name, ct);
            return Results.Json(points.Select(p => new HistoryPoint(p.Generation, p.Time.UtcDateTime, p.BytesSince)).ToList(),
                ApiJson.Wire.IReadOnlyListHistoryPoint);
        });

        // Waits for the revert unless ?wait=false: then 202 and the operation to poll (the command line draws its progress).
        api.MapPost("/volumes/{name}/revert", async (string name, string? wait, HttpRequest request, SnapshotService snapshots, VolumeRevert revert,
            AdminOperations operations, CancellationToken ct) =>
        {
            var waits = VolumeEndpoints.Waits(wait); // a bad flag is refused before anything starts
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.RevertRequest);
            var given = (body.To is null ? 0 : 1) + (body.Generation is null ? 0 : 1) + (body.At is null ? 0 : 1);
            if (given != 1) throw new BadApiRequestException("give exactly one of to (a snapshot), generation or at (a time), e.g. {\"to\": \"before-upgrade\"}");
            var query = body.Generation is { } generation
                ? generation >= 1 ? PointQuery.AtGeneration(generation) : throw new BadApiRequestException("generation must be 1 or more")
                : body.At is { } at ? (PointSpec.TryParseTime(at, out var time) ? time! : throw new BadApiRequestException(PointSpec.TimeError("at", at)))
                : snapshots.ResolvePoint(name, body.To!);
            var plan = await revert.PlanExclusiveAsync(name, query, ct);
            var operation = operations.Start("volume-revert", name,
                $"revert {name} to generation {plan.To.Generation} ({plan.To.Time:yyyy-MM-ddTHH:mm:ssZ}); undo: --to {plan.Undo}", plan.Bytes,
                op => revert.RunAsync(plan, done => op.Report(done, plan.Bytes), CancellationToken.None));
            if (!waits)
                return Results.Json(operation.Info(), ApiJson.Wire.OperationInfo, statusCode: StatusCodes.Status202Accepted);
            await operation.Completion.WaitAsync(ct);
            if (operation.Failure is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            return Results.Json(operation.Info(), ApiJson.Wire.OperationInfo);
        }).AddEndpointFilter<RequireAdminToken>();

        var group = api.MapGroup("/snapshots");
        group.MapGet("", async (string? volume, SnapshotService snapshots, CancellationToken ct) =>
            Results.Json(await ListAsync(snapshots, volume, ct), ApiJson.Wire.IReadOnlyListSnapshotInfo));

        group.MapGet("/{volume}/{name}", async (string volume, string name, SnapshotService snapshots, CancellationToken ct) =>
            Results.Json((await ListAsync(snapshots, volume, ct)).FirstOrDefault(s => s.Name == name)
                         ?? throw new SnapshotNotFoundException($"volume {volume} has no snapshot named {name}"), ApiJson.Wire.SnapshotInfo));

        group.MapPost("", async (HttpRequest request, SnapshotService snapshots, CancellationToken ct) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.CreateSnapshotRequest);
            if (body.Volumes is not { Count: > 0 } volumes) throw new BadApiRequestException("volumes is required, e.g. {\"volumes\": [\"vol0\"], \"name\": \"before-upgrade\"}");
            if (volumes.Any(string.IsNullOrEmpty)) throw new BadApiRequestException("volumes names volumes: no null or empty entries, e.g. {\"volumes\": [\"vol0\"]}");
            if (string.IsNullOrEmpty(body.Name)) throw new BadApiRequestException("name is required, e.g. {\"volumes\": [\"vol0\"], \"name\": \"before-upgrade\"}");
            if (body.At is not null && body.Generation is not null) throw new BadApiRequestException("give at or generation, not both");
            PointQuery? at = null;
            if (body.Generation is { } generation)
                at = generation >= 1 ? PointQuery.AtGeneration(generation) : throw new BadApiRequestException("generation must be 1 or more");
            else if (body.At is { } text)
                at = PointSpec.TryParseTime(text, out var query) ? query : throw new BadApiRequestException(PointSpec.TimeError("at", text));
            var created = await snapshots.CreateAsync(volumes, body.Name, at, ct);
            var infos = new List<SnapshotInfo>();
            foreach (var record in created) infos.Add(Info(record, new Dictionary<long, long>(), snapshots));
            return Results.Json<IReadOnlyList<SnapshotInfo>>(infos, ApiJson.Wire.IReadOnlyListSnapshotInfo, statusCode: StatusCodes.Status201Created);
        }).AddEndpointFilter<RequireAdminToken>();

        group.MapDelete("/{volume}/{name}", async (string volume, string name, SnapshotService snapshots, CancellationToken ct) =>
            Results.Json(Info(await snapshots.DeleteAsync(volume, name, ct), new Dictionary<long, long>(), snapshots), ApiJson.Wire.SnapshotInfo))
            .AddEndpointFilter<RequireAdminToken>();

        // Creates the clone, then (independent) copies the snapshot's data in the background. Waits for all of it unless
        // ?wait=false: then 202 and the operation to poll (the command line draws its progress).
        group.MapPost("/{volume}/{name}/clone", async (string volume, string name, string? wait, HttpRequest request, CloneCreation clones,
            AdminOperations operations, VolumeInfoReader reader, CancellationToken ct) =>
        {
            var waits = VolumeEndpoints.Waits(wait);
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.CloneRequest);
            if (string.IsNullOrEmpty(body.Name)) throw new BadApiRequestException("name is required: the new volume's, e.g. {\"name\": \"vol1\"}");
            if (!VolumeSpec.IsValidName(body.Name)) throw new BadApiRequestException(VolumeSpec.NameError(body.Name));
            if (body.Mode is { } mode && !VolumeSpec.TryParseMode(mode, out _, out var modeError)) throw new BadApiRequestException(modeError);
            var clone = await clones.CreateAsync(volume, name, body.Name, body.Mode, ct);
            var operation = body.Independent
                ? operations.Start("snapshot-clone", clone.Name, $"copy {volume}@{name} into clone {clone.Name}", clone.Size >> 12,
                    op => clones.MakeIndependentAsync(clone.Name, op.Report, CancellationToken.None))
                : operations.Start("snapshot-clone", clone.Name, $"clone {volume}@{name} as {clone.Name}", 0, _ => Task.CompletedTask);
            if (!waits) return Results.Json(operation.Info(), ApiJson.Wire.OperationInfo, statusCode: StatusCodes.Status202Accepted);
            await operation.Completion.WaitAsync(ct);
            if (operation.Failure is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            return Results.Json(await reader.GetAsync(clone.Name, ct), ApiJson.Wire.VolumeInfo, statusCode: StatusCodes.Status201Created);
        }).AddEndpointFilter<RequireAdminToken>();

        // GET /api/diff?from=VOL@A&to=VOL@B (or to=VOL: the live volume)
        api.MapGet("/diff", async (string? from, string? to, SnapshotService snapshots, CancellationToken ct) =>
        {
            if (string.IsNullOrEmpty(from) || string.IsNullOrEmpty(to) || !from.Contains('@'))
                throw new BadApiRequestException("from (VOL@SNAPSHOT or VOL@POINT) and to (the same volume's VOL@POINT, or VOL) are required, " +
                                                 "e.g. /api/diff?from=vol0@before-upgrade&to=vol0");
            var ranges = await snapshots.DiffAsync(from, to, ct);
            return Results.Json(ranges.Select(r => new ChangedRangeInfo(r.Offset, r.Length)).ToList(), ApiJson.Wire.IReadOnlyListChangedRangeInfo);
        });
    }

    private static async Task<IReadOnlyList<SnapshotInfo>> ListAsync(SnapshotService snapshots, string? volume, CancellationToken ct)
    {
        var records = snapshots.List(volume);
        var exclusive = new Dictionary<string, IReadOnlyDictionary<long, long>>();
        foreach (var name in records.Select(r => r.Volume).Distinct()) exclusive[name] = await snapshots.ExclusiveBytesAsync(name, ct);
        return [.. records.Select(r => Info(r, exclusive[r.Volume], snapshots))];
    }

    private static SnapshotInfo Info(SnapshotRecord record, IReadOnlyDictionary<long, long> exclusive, SnapshotService snapshots) => new()
    {
        Volume = record.Volume,
        Name = record.Name,
        Generation = record.Generation,
        Time = record.Point.Time.UtcDateTime,
        Export = record.Export,
        State = record.Expired is null ? "ok" : "expired",
        // Several snapshots of one point share what it holds: none of them alone frees it.
        ExclusiveBytes = record.Expired is null && snapshots.List(record.Volume).Count(s => s.Sequence == record.Sequence && s.Expired is null) == 1
            ? exclusive.GetValueOrDefault(record.Sequence) : 0,
        Created = record.Created.UtcDateTime,
        Clones = snapshots.ClonesOf(record.Volume, record.Name),
    };
}
