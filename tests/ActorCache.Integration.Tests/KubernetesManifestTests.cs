using System.Text.Json.Nodes;

namespace ActorCache.Integration.Tests;

/// <summary>
/// k8s/ renders (<c>kubectl kustomize</c>) and every resource validates offline against the Kubernetes OpenAPI schemas
/// (npm package kubernetes-models, run by tests/k8s-validate/validate.mjs under node); a broken manifest is refused. Also
/// the properties the deployment relies on, which a schema does not check.
/// </summary>
public sealed class KubernetesManifestTests
{
    private static string ValidatorDir => Path.Combine(KubernetesManifests.RepositoryRoot, "tests", "k8s-validate");

    private static readonly SemaphoreSlim Install = new(1, 1);

    /// <summary>Runs the validator on <paramref name="yaml"/>, installing its npm packages first when .ci/run has not.</summary>
    private static async Task<ToolResult> ValidateAsync(string yaml)
    {
        await Install.WaitAsync();
        try
        {
            if (!Directory.Exists(Path.Combine(ValidatorDir, "node_modules", "kubernetes-models")))
            {
                var install = await Tool.RunAsync("bash", ["-c", $"cd '{ValidatorDir}' && npm ci --no-audit --no-fund"], TimeSpan.FromMinutes(5));
                Assert.True(install.ExitCode == 0, $"npm ci in tests/k8s-validate failed:\n{install.Output}");
            }
        }
        finally
        {
            Install.Release();
        }
        return await Tool.RunAsync("node", [Path.Combine(ValidatorDir, "validate.mjs")], TimeSpan.FromMinutes(2), stdin: yaml);
    }

    [Fact]
    public async Task The_base_renders_and_every_resource_is_valid_against_the_kubernetes_schemas()
    {
        var yaml = await KubernetesManifests.RenderAsync();
        var result = await ValidateAsync(yaml);
        Assert.True(result.ExitCode == 0, result.Output);
        foreach (var kind in new[] { "StatefulSet", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PodDisruptionBudget" })
            Assert.Contains($"{kind}/", result.Stdout);
        Assert.Contains("0 invalid", result.Stdout);
    }

    [Fact]
    public async Task A_broken_manifest_is_refused()
    {
        // A copy of k8s/ with a port given by name where the schema wants a number.
        var copy = Directory.CreateTempSubdirectory("actorcache-k8s-").FullName;
        try
        {
            foreach (var file in Directory.GetFiles(Path.Combine(KubernetesManifests.RepositoryRoot, "k8s")))
                File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
            var statefulSet = Path.Combine(copy, "statefulset.yaml");
            var text = File.ReadAllText(statefulSet);
            Assert.Contains("containerPort: 10809", text);
            File.WriteAllText(statefulSet, text.Replace("containerPort: 10809", "containerPort: nbd"));
            var result = await ValidateAsync(await KubernetesManifests.RenderAsync(copy));
            Assert.Equal(1, result.ExitCode);
            Assert.Contains("StatefulSet/actorcache: INVALID", result.Stdout);
            Assert.Contains("containerPort", result.Stdout);
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }
    }

    [Fact]
    public async Task The_statefulset_services_rbac_and_budget_say_what_the_deployment_needs()
    {
        var manifests = KubernetesManifests.Parse(await KubernetesManifests.RenderAsync());
        var statefulSet = KubernetesManifests.Single(manifests, "StatefulSet");
        var spec = statefulSet["spec"]!;
        Assert.Equal("3", spec["replicas"].Text());
        Assert.Equal("Parallel", spec["podManagementPolicy"].Text());
        var pod = spec["template"]!["spec"]!;
        Assert.Equal("true", pod["securityContext"]!["runAsNonRoot"].Text());
        var container = pod["containers"]!.AsArray().Single()!;
        var ports = container["ports"]!.AsArray().ToDictionary(p => p!["name"].Text(), p => p!["containerPort"].Text());
        Assert.Equal(new Dictionary<string, string> { ["nbd"] = "10809", ["remoting"] = "4053", ["management"] = "8558", ["admin"] = "9460" }, ports);
        Assert.Equal("/health", container["readinessProbe"]!["httpGet"]!["path"].Text());
        Assert.Equal("/health/live", container["livenessProbe"]!["httpGet"]!["path"].Text());
        Assert.NotNull(container["startupProbe"]);
        var preStop = container["lifecycle"]!["preStop"]!["exec"]!["command"]!.AsArray().Select(c => c.Text()).ToArray();
        Assert.Equal(["actorcache", "cluster", "leave"], preStop[..3]);
        Assert.NotEmpty(spec["volumeClaimTemplates"]!.AsArray());
        // The label the nodes' selector looks for is on the pods.
        var conf = KubernetesManifests.Single(manifests, "ConfigMap")["data"]!["actorcache.conf"].Text();
        Assert.Contains("label-selector = \"app.kubernetes.io/name=actorcache\"", conf);
        // A pod stuck out of the cluster exits for the kubelet to start it again.
        Assert.Contains("shutdown-after-unsuccessful-join-seed-nodes = 120s", conf);
        Assert.Equal("actorcache", spec["template"]!["metadata"]!["labels"]!["app.kubernetes.io/name"].Text());

        var role = KubernetesManifests.Single(manifests, "Role");
        var rule = role["rules"]!.AsArray().Single()!;
        Assert.Equal(["pods"], rule["resources"]!.AsArray().Select(r => r.Text()));
        Assert.Equal(["get", "list", "watch"], rule["verbs"]!.AsArray().Select(r => r.Text()).Order());
        var budget = KubernetesManifests.Single(manifests, "PodDisruptionBudget")["spec"]!;
        Assert.Equal("1", budget["maxUnavailable"].Text());
        // A budget without a selector selects no pod: its labels must be on the pods.
        var selected = budget["selector"]!["matchLabels"]!.AsObject();
        Assert.NotEmpty(selected);
        foreach (var (label, value) in selected)
            Assert.Equal(value.Text(), spec["template"]!["metadata"]!["labels"]![label].Text());
        // Each pod's default volume has a name of its own (the NBD Service balances across pods), and that Service reaches
        // primaries whose peers are still resyncing (not ready yet).
        Assert.Contains("actorcache.default-volume=\"$(POD_NAME)-vol0:1G\"", container["args"]!.AsArray().Select(a => a.Text()));
        var nbd = manifests.Single(d => d["kind"].Text() == "Service" && d["metadata"]!["name"].Text() == "actorcache-nbd");
        Assert.Equal("true", nbd["spec"]!["publishNotReadyAddresses"].Text());
        var headless = manifests.Single(d => d["kind"].Text() == "Service" && d["spec"]!["clusterIP"].Text() == "None");
        Assert.Equal(spec["serviceName"].Text(), headless["metadata"]!["name"].Text());
    }
}
