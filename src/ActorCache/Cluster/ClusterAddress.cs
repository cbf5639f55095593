using System.Globalization;
using ActorCache.Hosting;

namespace ActorCache.Cluster;

/// <summary>
/// A node's Akka remoting address as a user writes it: <c>HOST:PORT</c> (<c>--cluster</c>, <c>--seed</c>,
/// <c>actorcache.cluster.seed-nodes</c>), an IPv6 host in brackets. Seeds may also be written as Akka
/// addresses (<c>akka.tcp://actorcache@HOST:PORT</c>); both mean the same node.
/// </summary>
public sealed record ClusterAddress(string Host, int Port)
{
    public const int DefaultPort = 4053;

    /// <summary>The Akka address of the node at this address: akka.tcp://actorcache@HOST:PORT.</summary>
    public string AkkaAddress => $"akka.tcp://{NodeHost.SystemName}@{Host}:{Port.ToString(CultureInfo.InvariantCulture)}";

    public override string ToString() => $"{Host}:{Port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>
    /// <c>HOST:PORT</c>; <paramref name="seed"/> also takes <c>akka.tcp://actorcache@HOST:PORT</c> and needs a
    /// real port (a seed on port 0 cannot be reached), where a listen address may say 0 (any free port).
    /// </summary>
    public static bool TryParse(string text, bool seed, out ClusterAddress? address, out string error)
    {
        address = null;
        error = "";
        var example = seed ? "e.g. 10.0.0.1:4053" : $"e.g. 127.0.0.1:{DefaultPort} or 10.0.0.5:{DefaultPort} (port 0 picks a free port)";
        var hostPort = text.Trim();
        var akkaPrefix = $"akka.tcp://{NodeHost.SystemName}@";
        if (seed && hostPort.StartsWith(akkaPrefix, StringComparison.Ordinal)) hostPort = hostPort[akkaPrefix.Length..];
        else if (hostPort.Contains("://", StringComparison.Ordinal) || hostPort.Contains('@'))
        {
            error = $"'{text}' is not a node address; write HOST:PORT{(seed ? $" (or {akkaPrefix}HOST:PORT)" : " without a scheme")}, {example}";
            return false;
        }
        var colon = hostPort.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(hostPort[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535 ||
            (seed && port == 0))
        {
            error = $"'{text}' needs a host and a port between {(seed ? 1 : 0)} and 65535, {example}";
            return false;
        }
        var host = hostPort[..colon];
        // An IPv6 address carries colons of its own, so it must be bracketed to tell it from the port.
        if (host.StartsWith('[') != host.EndsWith(']') || (!host.StartsWith('[') && host.Contains(':')))
        {
            error = $"'{text}': write an IPv6 host in brackets, e.g. [::1]:{DefaultPort}";
            return false;
        }
        if (host.Any(c => char.IsWhiteSpace(c) || c is '/' or '?' or '#'))
        {
            error = $"'{text}' does not name a host, {example}";
            return false;
        }
        address = new ClusterAddress(host, port);
        return true;
    }
}
