using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace ActorCache.Integration.Tests;

/// <summary>
/// The StatefulSet of k8s/ run as processes: <c>kubectl kustomize k8s/</c> is rendered, and each pod's container is started
/// as <c>actorcache</c> with the command, args and env its spec says, against <see cref="KubernetesApiStandIn"/>. What a
/// kubelet would provide is made on this machine, and only that:
/// <list type="bullet">
/// <item>downward-API env: metadata.name = actorcache-N, metadata.namespace = the test's namespace, status.podIP = 127.0.0.1;
/// <c>$(VAR)</c> in args expanded from the env, as Kubernetes does;</item>
/// <item>KUBERNETES_SERVICE_HOST/PORT (set in every pod) point at the stand-in;</item>
/// <item>volume mounts: the claim's mountPath is a data directory per pod, the ConfigMap's is a directory holding its
/// files; an arg under a mountPath is rewritten to the local directory;</item>
/// <item>the service account's files (token, ca.crt, namespace) are in a directory of the test; since a process cannot
/// have them at /var/run/secrets, the only args added are <c>--set actorcache.cluster.kubernetes.token-path/ca-path</c>;</item>
/// <item>ports: every pod has the same container ports, which would collide on one machine, so each pod gets a free port
/// per named container port; an arg ending in <c>:PORT</c> (HOST:PORT, tcp://HOST:PORT) with a container port's number
/// gets the pod's port for it, and the pod the stand-in lists carries the same mapping (its management port is what
/// bootstrap probes).</item>
/// </list>
/// </summary>
public sealed partial class KubernetesTests : IAsyncLifetime
{
    private const string Namespace = "actorcache-test";
    private readonly List<string> _dirs = [];
    private readonly List<NodeProcess> _nodes = [];
    private KubernetesApiStandIn _api = null!;

    public async Task InitializeAsync() => _api = await KubernetesApiStandIn.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
        await _api.DisposeAsync();
        foreach (var dir in _dirs) Directory.Delete(dir, recursive: true);
    }

    private string NewDir()
    {
        var dir = NodeProcess.NewDataDir();
        _dirs.Add(dir);
        return dir;
    }

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex VariableReference();

    [GeneratedRegex(@":(\d+)$")]
    private static partial Regex TrailingPort();

    /// <summary>Where pods find the Kubernetes API when not at the stand-in (a test of an API that cannot be reached).</summary>
    private int? _apiPort;

    /// <summary>Each pod's volumes (mountPath -> local directory): a pod started again gets the same claim and ConfigMap.</summary>
    private readonly Dictionary<int, Dictionary<string, string>> _podMounts = [];

    /// <summary>Starts pod <paramref name="ordinal"/> of the rendered StatefulSet; registers it with the stand-in when <paramref name="listed"/>.</summary>
    private NodeProcess StartPod(List<JsonObject> manifests, int ordinal, bool listed, params string[] extraSets)
    {
        var statefulSet = KubernetesManifests.Single(manifests, "StatefulSet");
        var configMap = KubernetesManifests.Single(manifests, "ConfigMap");
        var podName = $"{statefulSet["metadata"]!["name"].Text()}-{ordinal}";
        var template = statefulSet["spec"]!["template"]!;
        var container = template["spec"]!["containers"]!.AsArray().Single()!;

        // Ports: a free one per named container port.
        var ports = new Dictionary<int, int>();
        var containers = new JsonArray();
        var mappedPorts = new JsonArray();
        foreach (var port in container["ports"]!.AsArray())
        {
            var fixedPort = int.Parse(port!["containerPort"].Text(), System.Globalization.CultureInfo.InvariantCulture);
            ports[fixedPort] = NodeProcess.FreePort();
            mappedPorts.Add(new JsonObject { ["name"] = port["name"].Text(), ["containerPort"] = ports[fixedPort], ["protocol"] = "TCP" });
        }
        containers.Add(new JsonObject { ["name"] = container["name"].Text(), ["ports"] = mappedPorts });

        // Mounts: the claim and the ConfigMap (the same directories when the pod starts again).
        var restarted = _podMounts.TryGetValue(ordinal, out var previous);
        var mounts = new Dictionary<string, string>();
        var volumes = template["spec"]!["volumes"]!.AsArray();
        var claims = statefulSet["spec"]!["volumeClaimTemplates"]!.AsArray().Select(c => c!["metadata"]!["name"].Text()).ToHashSet();
        string dataDir = "";
        foreach (var mount in container["volumeMounts"]!.AsArray())
        {
            var name = mount!["name"].Text();
            var path = mount["mountPath"].Text();
            var local = restarted ? previous![path] : NewDir();
            if (claims.Contains(name)) dataDir = local;
            var volume = volumes.SingleOrDefault(v => v!["name"].Text() == name);
            if (volume?["configMap"] is { } source)
            {
                Assert.Equal(configMap["metadata"]!["name"].Text(), source["name"].Text());
                foreach (var (file, content) in configMap["data"]!.AsObject()) File.WriteAllText(Path.Combine(local, file), content.Text());
            }
            mounts[path] = local;
        }
        Assert.NotEqual("", dataDir);
        _podMounts[ordinal] = mounts;

        var env = new Dictionary<string, string>
        {
            ["KUBERNETES_SERVICE_HOST"] = "127.0.0.1",
            ["KUBERNETES_SERVICE_PORT"] = (_apiPort ?? _api.Port).ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        foreach (var variable in container["env"]!.AsArray())
        {
            var name = variable!["name"].Text();
            if (variable["value"] is { } value) env[name] = value.Text();
            else
            {
                var field = variable["valueFrom"]!["fieldRef"]!["fieldPath"].Text();
                env[name] = field switch
                {
                    "metadata.name" => podName,
                    "metadata.namespace" => Namespace,
                    "status.podIP" => "127.0.0.1",
                    _ => throw new Xunit.Sdk.XunitException($"the test does not know the downward-API field {field}"),
                };
            }
        }

        var command = container["command"]!.AsArray().Select(c => c.Text()).ToList();
        Assert.Equal(["actorcache"], command); // the image's binary: here `dotnet ActorCache.dll`
        var args = new List<string>();
        foreach (var raw in container["args"]!.AsArray().Select(a => a.Text()))
        {
            var arg = VariableReference().Replace(raw, m => env.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value);
            arg = TrailingPort().Replace(arg, m => ports.TryGetValue(int.Parse(m.Groups[1].Value), out var p) ? $":{p}" : m.Value);
            var under = mounts.Keys.Where(path => arg == path || arg.StartsWith(path + "/", StringComparison.Ordinal)).MaxBy(path => path.Length);
            if (under is not null) arg = mounts[under] + arg[under.Length..];
            args.Add(arg);
        }
        var serviceAccount = NewDir();
        _api.WriteServiceAccount(serviceAccount, Namespace);
        args.AddRange(["--set", $"actorcache.cluster.kubernetes.token-path={Path.Combine(serviceAccount, "token")}",
            "--set", $"actorcache.cluster.kubernetes.ca-path={Path.Combine(serviceAccount, "ca.crt")}"]);
        foreach (var set in extraSets) args.AddRange(["--set", set]);

        if (listed)
        {
            var labels = template["metadata"]!["labels"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value.Text());
            _api.RemovePod(podName);
            _api.AddPod(new KubernetesApiStandIn.Pod(Namespace, podName, labels, "127.0.0.1", containers));
        }
        var node = NodeProcess.LaunchExactly(dataDir, args, env, ports[10809]);
        _nodes.Add(node);
        return node;
    }

    private static async Task<List<JsonElement>> WaitForMembersAsync(NodeProcess node, Func<List<JsonElement>, bool> done, int seconds = 90)
    {
        var watch = Stopwatch.StartNew();
        List<JsonElement> members = [];
        while (watch.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            members = [.. (await Cli.JsonAsync(node, "cluster", "show")).EnumerateArray()];
            if (done(members)) return members;
            await Task.Delay(1000);
        }
        throw new Xunit.Sdk.XunitException($"not within {seconds} s; cluster show said {JsonSerializer.Serialize(members)}\n{node.Output}");
    }

    [Fact]
    public async Task The_statefulsets_pods_form_one_cluster_through_the_kubernetes_api_alone()
    {
        var manifests = KubernetesManifests.Parse(await KubernetesManifests.RenderAsync());
        var replicas = KubernetesManifests.Single(manifests, "StatefulSet")["spec"]!["replicas"].Text();
        Assert.Equal("3", replicas);
        var pods = Enumerable.Range(0, 3).Select(i => StartPod(manifests, i, listed: true)).ToList();
        foreach (var pod in pods) await pod.WaitReadyAsync();

        string[] names = ["actorcache-0", "actorcache-1", "actorcache-2"];
        foreach (var pod in pods)
        {
            var members = await WaitForMembersAsync(pod, m => m.Count == 3 && m.All(x => x.GetProperty("status").GetString() == "Up"));
            Assert.Equal(names, members.Select(m => m.GetProperty("node").GetString()!).Order().ToArray());
        }
        // Through discovery alone: no seed list anywhere, and the stand-in was asked for the StatefulSet's pods.
        Assert.DoesNotContain(pods.SelectMany(p => p.Output.Split('\n')), line => line.Contains("--seed", StringComparison.Ordinal));
        lock (_api.Requests)
            Assert.Contains(_api.Requests, r => r.StartsWith($"/api/v1/namespaces/{Namespace}/pods?labelSelector=", StringComparison.Ordinal));
        using var http = new HttpClient();
        foreach (var pod in pods) Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync(pod.AdminUrl + "/health")).StatusCode);
    }

    [Fact]
    public async Task A_selector_that_matches_no_pods_leaves_the_node_running_and_not_joined()
    {
        var manifests = KubernetesManifests.Parse(await KubernetesManifests.RenderAsync());
        // The pod is not listed: the API answers an empty list for the selector. The join timeout is shortened (test only).
        var pod = StartPod(manifests, 0, listed: false, "actorcache.cluster.join-timeout=3s");
        await pod.WaitReadyAsync();
        var (status, body) = await WaitHealthSaysAsync(pod, "no pods match");
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains($"no pods match 'app.kubernetes.io/name=actorcache' in namespace {Namespace}", body);
        await Task.Delay(3000);
        Assert.False(pod.HasExited, pod.Output);
        var members = (await Cli.JsonAsync(pod, "cluster", "show")).EnumerateArray().ToList();
        Assert.Equal("NotJoined", Assert.Single(members).GetProperty("status").GetString());
    }

    /// <summary>Polls /health until its body says <paramref name="expected"/> (the join timeout is 3 s here); returns the last answer.</summary>
    private static async Task<(System.Net.HttpStatusCode Status, string Body)> WaitHealthSaysAsync(NodeProcess pod, string expected)
    {
        using var http = new HttpClient();
        var watch = Stopwatch.StartNew();
        HttpResponseMessage health;
        string body;
        do
        {
            await Task.Delay(1000);
            health = await http.GetAsync(pod.AdminUrl + "/health");
            body = await health.Content.ReadAsStringAsync();
        } while (!(expected == "ok\n" ? body == expected : body.Contains(expected, StringComparison.Ordinal)) && watch.Elapsed < TimeSpan.FromSeconds(60));
        return (health.StatusCode, body);
    }

    [Fact]
    public async Task A_kubernetes_api_that_cannot_be_reached_leaves_the_node_running_not_ready_and_retrying()
    {
        var manifests = KubernetesManifests.Parse(await KubernetesManifests.RenderAsync());
        _apiPort = NodeProcess.FreePort(); // nothing listens there
        var pod = StartPod(manifests, 0, listed: false, "actorcache.cluster.join-timeout=3s");
        await pod.WaitReadyAsync();
        var (status, body) = await WaitHealthSaysAsync(pod, "cannot be reached");
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains($"cluster: not joined after 3 s: the Kubernetes API at https://127.0.0.1:{_apiPort}", body);
        Assert.Contains("still trying", body);
        // It keeps asking (a retry per lookup, no crash loop): the log says so more than once, and the process runs on.
        await Task.Delay(3000);
        Assert.False(pod.HasExited, pod.Output);
        Assert.True(pod.Output.Split('\n').Count(l => l.Contains("cannot be reached", StringComparison.Ordinal)) >= 2, pod.Output);
        Assert.Equal("NotJoined", Assert.Single((await Cli.JsonAsync(pod, "cluster", "show")).EnumerateArray()).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Fewer_pods_than_the_required_contact_points_leave_the_node_running_not_ready_and_retrying()
    {
        var manifests = KubernetesManifests.Parse(await KubernetesManifests.RenderAsync());
        // Only this pod is listed; the ConfigMap requires 2 contact points to form a cluster, so none ever forms.
        var pod = StartPod(manifests, 0, listed: true, "actorcache.cluster.join-timeout=3s");
        await pod.WaitReadyAsync();
        var (status, body) = await WaitHealthSaysAsync(pod, "not enough nodes");
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains("bootstrap found no cluster to join and not enough nodes to form one", body);
        Assert.Contains("2 needed", body);
        Assert.Contains("1 of 1 pod(s) matching", body);
        await Task.Delay(3000);
        Assert.False(pod.HasExited, pod.Output);
        Assert.Equal("NotJoined", Assert.Single((await Cli.JsonAsync(pod, "cluster", "show")).EnumerateArray()).GetProperty("status").GetString());
        // The second pod appears: the two form the cluster, and the first turns ready.
        var second = StartPod(manifests, 1, listed: true);
        await second.WaitReadyAsync();
        await WaitForMembersAsync(pod, m => m.Count == 2 && m.All(x => x.GetProperty("status").GetString() == "Up"));
        (status, body) = await WaitHealthSaysAsync(pod, "ok\n");
        Assert.True(status == System.Net.HttpStatusCode.OK && body == "ok\n", $"{(int)status}: {body}");
    }
}
