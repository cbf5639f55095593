using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Discovery;
using Akka.Event;

namespace ActorCache.Cluster;

/// <summary>
/// Contact points from the Kubernetes API: the running pods of a label selector in one namespace, each with the port
/// its containers name for management (<c>GET /api/v1/namespaces/NS/pods?labelSelector=...</c>, as a pod's service
/// account reads it). Our own rather than Akka.Discovery.KubernetesApi, which is built against KubernetesClient 17.0.14:
/// the registry serves 19.0.2 and up, whose changed model constructors make its lookup throw MissingMethodException.
/// Each lookup's outcome goes to <see cref="DiscoveryReport"/> so /health can say why the node is not in a cluster.
/// </summary>
public sealed class KubernetesPodDiscovery : ServiceDiscovery
{
    public const string ConfigPath = "akka.discovery.kubernetes-pods";

    private readonly ILoggingAdapter _log;
    private readonly string _selector;
    private readonly string _namespace;
    private readonly string _tokenPath;
    private readonly string _caPath;
    private readonly string _portName;
    private readonly DiscoveryReport _report;
    private readonly HttpClient? _http;
    private readonly string _apiBase = "";

    public KubernetesPodDiscovery(ExtendedActorSystem system)
    {
        _log = Logging.GetLogger(system, this);
        var config = system.Settings.Config.GetConfig(ConfigPath);
        _selector = config.GetString("label-selector");
        _tokenPath = config.GetString("token-path");
        _caPath = config.GetString("ca-path");
        _portName = config.GetString("port-name");
        _namespace = config.GetString("namespace") is { Length: > 0 } ns ? ns : ReadNamespace(config.GetString("namespace-path"));
        _report = system.Settings.Setup.Get<DiscoveryReportSetup>().Select(s => s.Report).GetOrElse(new DiscoveryReport());

        var host = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
        var port = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_PORT");
        if (string.IsNullOrWhiteSpace(host) || string.IsNullOrWhiteSpace(port))
        {
            _report.Record("the Kubernetes API is not known: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set " +
                           "(Kubernetes sets them in every pod; run the node in a pod, or use --discovery config)");
            return;
        }
        _apiBase = $"https://{(host.Contains(':') ? $"[{host}]" : host)}:{port}";
        var handler = new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        if (File.Exists(_caPath))
        {
            // The API server's certificate is checked against the service account's CA, as kubectl does in a pod.
            var cas = new X509Certificate2Collection();
            try
            {
                cas.ImportFromPemFile(_caPath);
            }
            catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
            {
                _report.Record($"the Kubernetes API's CA {_caPath} cannot be read: {e.Message}; check actorcache.cluster.kubernetes.ca-path");
                return;
            }
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            {
                if (errors == SslPolicyErrors.None) return true;
                if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.AddRange(cas);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(new X509Certificate2(certificate));
            };
        }
        _http = new HttpClient(handler);
    }

    private static string ReadNamespace(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim() is { Length: > 0 } ns ? ns : "default";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "default";
        }
    }

    public override async Task<Resolved> Lookup(Lookup lookup, TimeSpan resolveTimeout)
    {
        var where = $"pods matching '{_selector}' in namespace {_namespace}";
        if (_http is null) return new Resolved(lookup.ServiceName, []);
        var url = $"{_apiBase}/api/v1/namespaces/{Uri.EscapeDataString(_namespace)}/pods?labelSelector={Uri.EscapeDataString(_selector)}";
        string token;
        try
        {
            // Read at every lookup: Kubernetes rotates the projected token.
            token = (await File.ReadAllTextAsync(_tokenPath)).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail(lookup, $"the service account token {_tokenPath} cannot be read: {e.Message}; check actorcache.cluster.kubernetes.token-path " +
                                "and that the pod mounts its service account token (automountServiceAccountToken)");
        }
        string body;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var cts = new CancellationTokenSource(resolveTimeout);
            using var response = await _http.SendAsync(request, cts.Token);
            body = await response.Content.ReadAsStringAsync(cts.Token);
            if (response.StatusCode is HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized)
                return Fail(lookup, $"the Kubernetes API at {_apiBase} refused to list {where} ({(int)response.StatusCode}); give the pod's service account " +
                                    "get/list/watch on pods in its namespace (k8s/rbac.yaml)");
            if (!response.IsSuccessStatusCode)
                return Fail(lookup, $"the Kubernetes API at {_apiBase} answered {(int)response.StatusCode} {response.ReasonPhrase} to listing {where}");
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            var reason = e is OperationCanceledException ? $"no answer within {resolveTimeout.TotalSeconds:0.#} s" : e.Message;
            return Fail(lookup, $"the Kubernetes API at {_apiBase} cannot be reached to list {where}: {reason}");
        }

        List<ResolvedTarget> targets;
        int pods;
        try
        {
            (targets, pods) = Targets(body);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
        {
            return Fail(lookup, $"the Kubernetes API at {_apiBase} answered with a pod list that cannot be read: {e.Message}");
        }
        if (pods == 0)
            return Fail(lookup, $"no pods match '{_selector}' in namespace {_namespace}; check actorcache.cluster.kubernetes.label-selector against the pods' labels");
        if (targets.Count == 0)
            return Fail(lookup, $"{pods} pod(s) match '{_selector}' in namespace {_namespace}, but none is running with an IP and a container port named '{_portName}'");
        _report.Record(null, $"{targets.Count} of {pods} pod(s) matching '{_selector}' in namespace {_namespace} are running: " +
                             string.Join(", ", targets.Select(t => $"{t.Host}:{t.Port}")));
        return new Resolved(lookup.ServiceName, targets);
    }

    private Resolved Fail(Lookup lookup, string problem)
    {
        _report.Record(problem);
        _log.Warning("cluster bootstrap: {0}; retrying", problem);
        return new Resolved(lookup.ServiceName, []);
    }

    /// <summary>Running pods not being deleted, with an IP and the named port: the contact points.</summary>
    private (List<ResolvedTarget> Targets, int Pods) Targets(string body)
    {
        using var document = JsonDocument.Parse(body);
        var items = document.RootElement.GetProperty("items");
        var targets = new List<ResolvedTarget>();
        foreach (var pod in items.EnumerateArray())
        {
            if (pod.GetProperty("metadata").TryGetProperty("deletionTimestamp", out var deleting) && deleting.ValueKind != JsonValueKind.Null) continue;
            if (!pod.TryGetProperty("status", out var status)) continue;
            if (!status.TryGetProperty("phase", out var phase) || phase.GetString() != "Running") continue;
            if (!status.TryGetProperty("podIP", out var ipElement) || ipElement.GetString() is not { Length: > 0 } ip) continue;
            int? port = null;
            foreach (var container in pod.GetProperty("spec").GetProperty("containers").EnumerateArray())
            {
                if (!container.TryGetProperty("ports", out var ports)) continue;
                foreach (var p in ports.EnumerateArray())
                    if (p.TryGetProperty("name", out var name) && name.GetString() == _portName) port ??= p.GetProperty("containerPort").GetInt32();
            }
            if (port is null) continue;
            targets.Add(new ResolvedTarget(ip, port, IPAddress.TryParse(ip, out var address) ? address : null));
        }
        return (targets, items.GetArrayLength());
    }
}

/// <summary>What the last Kubernetes lookup found (or why it found nothing), for /health and `cluster show`'s hint.</summary>
public sealed class DiscoveryReport
{
    private volatile string? _problem;
    private volatile string? _found;

    public string? Problem => _problem;
    public string? Found => _found;

    public void Record(string? problem, string? found = null)
    {
        _problem = problem;
        if (found is not null) _found = found;
    }
}

/// <summary>Hands the node's <see cref="DiscoveryReport"/> to the discovery Akka creates.</summary>
public sealed class DiscoveryReportSetup(DiscoveryReport report) : Setup
{
    public DiscoveryReport Report { get; } = report;
}
