using ActorCache.Cluster;
using ActorCache.Hosting;
using Akka.Configuration;

namespace ActorCache.Tests;

/// <summary>
/// Cluster bootstrap without seeds: --discovery and --management with actorcache.cluster.discovery and its blocks, what is
/// refused, and the Akka settings a node with discovery runs with (parsed back, so quoting mistakes show).
/// </summary>
public sealed class ClusterDiscoverySettingsTests
{
    private static NodeSettings Load(string[]? sets = null, string? discovery = null, string? management = null, string? cluster = null,
        string[]? seeds = null, string? nodeName = null) =>
        NodeSettingsLoader.Load(new ServeFlags(null, "/tmp/ac-settings", [], [], sets ?? [], null, nodeName, cluster, seeds, discovery, management));

    [Fact]
    public void Seeds_are_the_default_and_kubernetes_has_the_pods_defaults()
    {
        var s = Load();
        Assert.Equal(ClusterDiscovery.Seeds, s.Discovery);
        Assert.Equal(2, s.RequiredContactPoints);
        Assert.Equal("app.kubernetes.io/name=actorcache", s.KubernetesLabelSelector);
        Assert.Equal("management", s.KubernetesPortName);
        Assert.Equal("/var/run/secrets/kubernetes.io/serviceaccount/token", s.KubernetesTokenPath);
        Assert.Equal("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", s.KubernetesCaPath);
        Assert.Equal("/var/run/secrets/kubernetes.io/serviceaccount/namespace", s.KubernetesNamespacePath);
        // Management defaults to the cluster host on 8558.
        Assert.Equal(new ClusterAddress("10.1.2.3", 8558), Load(discovery: "kubernetes", cluster: "10.1.2.3:4053").Management);
    }

    [Fact]
    public void The_flag_wins_over_the_setting_and_management_takes_host_and_port()
    {
        Assert.Equal(ClusterDiscovery.Config, Load(sets: ["actorcache.cluster.discovery = config", "actorcache.cluster.contact-points = [\"10.0.0.1:8558\"]"]).Discovery);
        var s = Load(sets: ["actorcache.cluster.discovery = config"], discovery: "kubernetes", management: "10.0.0.9:18558");
        Assert.Equal(ClusterDiscovery.Kubernetes, s.Discovery);
        Assert.Equal(new ClusterAddress("10.0.0.9", 18558), s.Management);
    }

    [Theory]
    [InlineData(null, "banana", "--discovery banana: use seeds, kubernetes or config")]
    [InlineData("actorcache.cluster.discovery = dns", null, "actorcache.cluster.discovery")]
    [InlineData(null, "config", "actorcache.cluster.contact-points is empty")]
    [InlineData("actorcache.cluster.contact-points = [\"10.0.0.1\"]", "config", "actorcache.cluster.contact-points: '10.0.0.1' needs a host and a port")]
    [InlineData("actorcache.cluster.required-contact-points = 0", "kubernetes", "actorcache.cluster.required-contact-points")]
    public void Bad_discovery_settings_are_refused_with_what_to_do(string? set, string? discovery, string message)
    {
        var e = Assert.Throws<SettingsException>(() => Load(sets: set is null ? [] : [set], discovery: discovery));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Seeds_and_discovery_do_not_mix_and_management_needs_a_real_port()
    {
        Assert.Contains("bootstrap finds the cluster without seeds",
            Assert.Throws<SettingsException>(() => Load(discovery: "kubernetes", seeds: ["10.0.0.1:4053"])).Message);
        Assert.StartsWith("--management: ", Assert.Throws<SettingsException>(() => Load(discovery: "kubernetes", management: "10.0.0.1:0")).Message);
        Assert.StartsWith("--management: ", Assert.Throws<SettingsException>(() => Load(discovery: "kubernetes", management: "http://10.0.0.1:8558")).Message);
    }

    [Fact]
    public void With_kubernetes_discovery_the_node_is_named_after_its_pod_unless_told_otherwise()
    {
        var before = Environment.GetEnvironmentVariable("POD_NAME");
        Environment.SetEnvironmentVariable("POD_NAME", "actorcache-2");
        try
        {
            Assert.Equal("actorcache-2", Load(discovery: "kubernetes").NodeName);
            Assert.Equal("b", Load(discovery: "kubernetes", nodeName: "b").NodeName);
            Assert.NotEqual("actorcache-2", Load().NodeName); // seeds: the host name, as before
            Environment.SetEnvironmentVariable("POD_NAME", "bad name");
            Assert.Contains("POD_NAME", Assert.Throws<SettingsException>(() => Load(discovery: "kubernetes")).Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable("POD_NAME", before);
        }
    }

    [Fact]
    public void The_akka_settings_point_bootstrap_at_the_pods_or_the_list()
    {
        var kubernetes = ConfigurationFactory.ParseString(ClusterBootstrapConfig.Hocon(Load(discovery: "kubernetes", management: "10.0.0.5:8558",
            sets: ["actorcache.cluster.kubernetes.label-selector = \"app=a,tier in (x)\"", "actorcache.cluster.kubernetes.namespace = prod",
                   "actorcache.cluster.required-contact-points = 3"])));
        Assert.Equal("10.0.0.5", kubernetes.GetString("akka.management.http.hostname"));
        Assert.Equal(8558, kubernetes.GetInt("akka.management.http.port"));
        Assert.Equal("kubernetes-pods", kubernetes.GetString("akka.management.cluster.bootstrap.contact-point-discovery.discovery-method"));
        Assert.Equal(3, kubernetes.GetInt("akka.management.cluster.bootstrap.contact-point-discovery.required-contact-point-nr"));
        Assert.Equal("management", kubernetes.GetString("akka.management.cluster.bootstrap.contact-point-discovery.port-name"));
        Assert.Equal("app=a,tier in (x)", kubernetes.GetString("akka.discovery.kubernetes-pods.label-selector"));
        Assert.Equal("prod", kubernetes.GetString("akka.discovery.kubernetes-pods.namespace"));
        Assert.StartsWith("ActorCache.Cluster.KubernetesPodDiscovery, ActorCache", kubernetes.GetString("akka.discovery.kubernetes-pods.class"));

        var list = ConfigurationFactory.ParseString(ClusterBootstrapConfig.Hocon(Load(discovery: "config",
            sets: ["actorcache.cluster.contact-points = [\"10.0.0.1:8558\", \"10.0.0.2:8558\", \"10.0.0.1:8558\"]"])));
        Assert.Equal("config", list.GetString("akka.management.cluster.bootstrap.contact-point-discovery.discovery-method"));
        Assert.Equal(["10.0.0.1:8558", "10.0.0.2:8558"], list.GetStringList("akka.discovery.config.services.actorcache.endpoints"));
    }
}
