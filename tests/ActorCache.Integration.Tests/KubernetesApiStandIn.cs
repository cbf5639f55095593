using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace ActorCache.Integration.Tests;

/// <summary>
/// A stand-in for the Kubernetes API server on loopback, for what a node asks it: <c>GET
/// /api/v1/namespaces/NS/pods?labelSelector=...</c>, answered as the real server does (a v1 PodList of the pods in NS whose
/// labels match every <c>key=value</c> of the selector), over HTTPS with a certificate of its own CA (written as the
/// service account's ca.crt) and only for the bearer token the service account holds. Every request is recorded.
/// </summary>
public sealed class KubernetesApiStandIn : IAsyncDisposable
{
    public sealed record Pod(string Namespace, string Name, IReadOnlyDictionary<string, string> Labels, string PodIp, JsonArray Containers);

    private readonly List<Pod> _pods = [];
    private readonly WebApplication _app;

    public string Token { get; } = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
    public string CaPem { get; }
    public int Port { get; private set; }
    public List<string> Requests { get; } = [];

    private KubernetesApiStandIn(X509Certificate2 certificate)
    {
        CaPem = certificate.ExportCertificatePem();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(certificate)));
        _app = builder.Build();
        _app.MapGet("/api/v1/namespaces/{ns}/pods", (string ns, HttpRequest request) =>
        {
            lock (Requests) Requests.Add(request.Path + request.QueryString);
            if (request.Headers.Authorization.ToString() != $"Bearer {Token}")
                return Results.Json(Status(401, "Unauthorized"), statusCode: 401);
            var selector = ParseSelector(request.Query["labelSelector"].ToString());
            List<Pod> pods;
            lock (_pods) pods = [.. _pods.Where(p => p.Namespace == ns && selector.All(s => p.Labels.TryGetValue(s.Key, out var v) && v == s.Value))];
            return Results.Text(PodList(pods).ToJsonString(), "application/json");
        });
    }

    public static async Task<KubernetesApiStandIn> StartAsync()
    {
        // The server's certificate is its own CA (self-signed), for the name the nodes reach it at: 127.0.0.1.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=kubernetes-stand-in", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        // Kestrel needs the key in a form it can use on Linux: a PFX round trip.
        var certificate = X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pfx), null);
        var api = new KubernetesApiStandIn(certificate);
        await api._app.StartAsync();
        api.Port = new Uri(api._app.Urls.First()).Port;
        return api;
    }

    public void AddPod(Pod pod)
    {
        lock (_pods) _pods.Add(pod);
    }

    /// <summary>A pod deleted and created again (a rolling update) comes back with new ports: the old entry goes.</summary>
    public void RemovePod(string name)
    {
        lock (_pods) _pods.RemoveAll(p => p.Name == name);
    }

    /// <summary>The service account files a pod has at /var/run/secrets/kubernetes.io/serviceaccount.</summary>
    public void WriteServiceAccount(string dir, string ns)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "token"), Token);
        File.WriteAllText(Path.Combine(dir, "ca.crt"), CaPem);
        File.WriteAllText(Path.Combine(dir, "namespace"), ns);
    }

    private static Dictionary<string, string> ParseSelector(string selector) =>
        selector.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(term => term.Split('=', 2))
            .ToDictionary(kv => kv[0].TrimEnd('='), kv => kv[1].TrimStart('='));

    private static JsonObject Status(int code, string reason) => new()
    {
        ["kind"] = "Status", ["apiVersion"] = "v1", ["status"] = "Failure", ["reason"] = reason, ["code"] = code,
    };

    private static JsonObject PodList(List<Pod> pods)
    {
        var items = new JsonArray();
        foreach (var pod in pods)
        {
            var labels = new JsonObject();
            foreach (var (k, v) in pod.Labels) labels[k] = v;
            items.Add(new JsonObject
            {
                ["metadata"] = new JsonObject { ["name"] = pod.Name, ["namespace"] = pod.Namespace, ["labels"] = labels },
                ["spec"] = new JsonObject { ["containers"] = pod.Containers.DeepClone() },
                ["status"] = new JsonObject { ["phase"] = "Running", ["podIP"] = pod.PodIp, ["podIPs"] = new JsonArray(new JsonObject { ["ip"] = pod.PodIp }) },
            });
        }
        return new JsonObject { ["kind"] = "PodList", ["apiVersion"] = "v1", ["metadata"] = new JsonObject { ["resourceVersion"] = "1" }, ["items"] = items };
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
