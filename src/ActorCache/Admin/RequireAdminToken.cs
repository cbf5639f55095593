using Microsoft.AspNetCore.Http;

namespace ActorCache.Admin;

/// <summary>
/// Lets a request that changes something through only with the node's admin token
/// (<c>Authorization: Bearer TOKEN</c>, see <see cref="AdminToken"/>); 401 otherwise, saying where the token is.
/// </summary>
public sealed class RequireAdminToken(AdminToken token) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var header = context.HttpContext.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return Refuse(context, "this request changes the node and needs its admin token: send 'Authorization: Bearer TOKEN' " +
                                   $"with the token from DATA_DIR/{AdminToken.FileName} (the command line reads it there, or takes --token)");
        if (!token.Matches(header["Bearer ".Length..].Trim()))
            return Refuse(context, $"the admin token is wrong; the node writes a new one to DATA_DIR/{AdminToken.FileName} at every start");
        return await next(context);
    }

    private static IResult Refuse(EndpointFilterInvocationContext context, string message)
    {
        context.HttpContext.Response.Headers.WWWAuthenticate = "Bearer";
        return ApiErrors.Error(StatusCodes.Status401Unauthorized, message);
    }
}
