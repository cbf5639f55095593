using System.Net;

namespace ActorCache.Admin;

/// <summary>Where the admin HTTP listener binds: <c>HOST:PORT</c>; port 0 picks a free port.</summary>
public sealed record AdminListenAddress(string Text, IPEndPoint EndPoint)
{
    public const string Default = "127.0.0.1:9460";

    public static bool TryParse(string text, out AdminListenAddress? address, out string error)
    {
        address = null;
        error = "";
        var example = $"e.g. {Default}, [::1]:9460 or 0.0.0.0:9460 (port 0 picks a free port)";
        if (text.Contains("://", StringComparison.Ordinal))
        {
            error = $"'{text}' must be HOST:PORT without a scheme, {example}";
            return false;
        }
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], out var port) || port is < 0 or > 65535)
        {
            error = $"'{text}' needs a host and a port between 0 and 65535, {example}";
            return false;
        }
        var host = text[..colon];
        // An IPv6 address carries colons of its own, so it must be bracketed to tell it from the port.
        if (host.StartsWith('[') != host.EndsWith(']') || (!host.StartsWith('[') && host.Contains(':')))
        {
            error = $"'{text}': write an IPv6 host in brackets, e.g. [::1]:9460";
            return false;
        }
        if (!ActorCache.Nbd.NbdListenAddress.TryResolveHost(host.Trim('[', ']'), text, out var ip, out error)) return false;
        address = new AdminListenAddress(text, new IPEndPoint(ip, port));
        return true;
    }
}
