using System.Globalization;
using ActorCache.Hosting;

namespace ActorCache.Cluster;

/// <summary>
/// The Akka.Management and Akka.Discovery settings for a node that finds its cluster through cluster bootstrap
/// (<c>actorcache.cluster.discovery</c> kubernetes or config) instead of a seed list: the management endpoint other
/// nodes probe, where the contact points come from, and how many must be reached before a new cluster forms.
/// </summary>
public static class ClusterBootstrapConfig
{
    public const int DefaultManagementPort = 8558;

    /// <summary>The service name bootstrap looks up (config discovery's key; Kubernetes uses the label selector alone).</summary>
    public const string ServiceName = "actorcache";

    public static string Hocon(NodeSettings settings)
    {
        var management = settings.Management ?? new ClusterAddress(settings.ClusterHostname, DefaultManagementPort);
        var kubernetes = settings.Discovery == ClusterDiscovery.Kubernetes;
        var lines = new List<string>
        {
            $"akka.management.http.hostname = {Quote(management.Host.Trim('[', ']'))}",
            $"akka.management.http.port = {management.Port.ToString(CultureInfo.InvariantCulture)}",
            $"akka.management.cluster.bootstrap.contact-point-discovery.service-name = {Quote(ServiceName)}",
            $"akka.management.cluster.bootstrap.contact-point-discovery.discovery-method = {(kubernetes ? "kubernetes-pods" : "config")}",
            $"akka.management.cluster.bootstrap.contact-point-discovery.required-contact-point-nr = {settings.RequiredContactPoints.ToString(CultureInfo.InvariantCulture)}",
            // Pods list every container port; only the one named so is the management endpoint.
            $"akka.management.cluster.bootstrap.contact-point-discovery.port-name = {Quote(kubernetes ? settings.KubernetesPortName : "")}",
            // Each contact point comes with its own port (the pod's named port, the list's HOST:PORT): none is dropped for
            // not being on this node's management port (nodes sharing a machine each have their own).
            "akka.management.cluster.bootstrap.contact-point.filter-on-fallback-port = false",
        };
        if (kubernetes)
        {
            lines.Add($"{KubernetesPodDiscovery.ConfigPath}.class = {Quote(typeof(KubernetesPodDiscovery).AssemblyQualifiedName!)}");
            lines.Add($"{KubernetesPodDiscovery.ConfigPath}.label-selector = {Quote(settings.KubernetesLabelSelector)}");
            lines.Add($"{KubernetesPodDiscovery.ConfigPath}.namespace = {Quote(settings.KubernetesNamespace)}");
            lines.Add($"{KubernetesPodDiscovery.ConfigPath}.namespace-path = {Quote(settings.KubernetesNamespacePath)}");
            lines.Add($"{KubernetesPodDiscovery.ConfigPath}.token-path = {Quote(settings.KubernetesTokenPath)}");
            lines.Add($"{KubernetesPodDiscovery.ConfigPath}.ca-path = {Quote(settings.KubernetesCaPath)}");
            lines.Add($"{KubernetesPodDiscovery.ConfigPath}.port-name = {Quote(settings.KubernetesPortName)}");
        }
        else
        {
            var endpoints = string.Join(", ", settings.ContactPoints.Select(p => Quote(p.ToString())));
            lines.Add($"akka.discovery.config.services.{ServiceName}.endpoints = [{endpoints}]");
        }
        return string.Join('\n', lines);
    }

    /// <summary>Where the node looks for its cluster, for messages: the selector and namespace, or the list.</summary>
    public static string Describe(NodeSettings settings) => settings.Discovery switch
    {
        ClusterDiscovery.Kubernetes =>
            $"Kubernetes pods matching '{settings.KubernetesLabelSelector}' in namespace " +
            $"{(settings.KubernetesNamespace.Length > 0 ? settings.KubernetesNamespace : "of the service account")}, " +
            $"{settings.RequiredContactPoints} needed to form a cluster",
        ClusterDiscovery.Config =>
            $"contact points {string.Join(", ", settings.ContactPoints)}, {settings.RequiredContactPoints} needed to form a cluster",
        _ => "",
    };

    private static string Quote(string text) => "\"" + text.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}
