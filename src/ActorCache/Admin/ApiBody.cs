using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using ActorCache.Admin.Api;
using Microsoft.AspNetCore.Http;

namespace ActorCache.Admin;

/// <summary>
/// Reads a request's JSON body: anything but one well-formed object of the endpoint's fields is a 400
/// that says what is wrong and where, in the request's terms (no .NET type names).
/// </summary>
public static class ApiBody
{
    public static async Task<T> ReadAsync<T>(HttpRequest request, JsonTypeInfo<T> type) where T : class, IApiRequest
    {
        T? body;
        try
        {
            body = await JsonSerializer.DeserializeAsync(request.Body, type, request.HttpContext.RequestAborted);
        }
        catch (JsonException e)
        {
            throw new BadApiRequestException(Describe(e));
        }
        if (body is null) throw new BadApiRequestException($"the request body must be a JSON object with {T.Fields}, not null");
        if (body.Unknown is { Count: > 0 } unknown)
            throw new BadApiRequestException($"unknown field{(unknown.Count > 1 ? "s" : "")} {string.Join(", ", unknown.Keys.Select(k => $"'{k}'"))}; this endpoint takes {T.Fields}");
        return body;
    }

    private static string Describe(JsonException e)
    {
        // The serializer appends where it was ("Path: $.size | LineNumber: 0 | ..."); say that our way.
        var what = e.Message;
        var cut = what.IndexOf(" Path: ", StringComparison.Ordinal);
        if (cut >= 0) what = what[..cut];
        if (what.StartsWith("The JSON value could not be converted", StringComparison.Ordinal)) what = "the value has the wrong type";
        var field = e.Path is null or "$" ? "" : $" in field '{e.Path.TrimStart('$', '.')}'";
        var position = e.LineNumber is { } line ? $" (line {line + 1}, byte {e.BytePositionInLine + 1})" : "";
        return $"the request body is not valid JSON for this endpoint{field}: {what.TrimEnd('.')}{position}";
    }
}
