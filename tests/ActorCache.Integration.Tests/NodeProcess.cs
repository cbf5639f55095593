using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ActorCache.Integration.Tests;

/// <summary>
/// The real <c>actorcache serve</c> process, started from the build output the way a user runs it.
/// Each node gets its own data directory, Unix socket and TCP port, and its admin listener a port of the
/// kernel's choosing (read back from DATA_DIR/admin.url), so tests can run side by side. Akka remoting
/// takes any free port too (<c>--cluster 127.0.0.1:0</c>) unless a test gives <c>--cluster</c> itself: the
/// default, 4053, would be taken by the first node of a parallel run.
/// </summary>
public sealed partial class NodeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly TaskCompletionSource _adminReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _volumesOpen = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private NodeProcess(Process process, string dataDir, int port)
    {
        _process = process;
        DataDir = dataDir;
        TcpPort = port;
    }

    public string DataDir { get; }
    public int TcpPort { get; }
    public string SocketPath => Path.Combine(DataDir, "nbd.sock");
    public string Output => string.Join('\n', _output);
    public int Pid => _process.Id;
    public string AdminUrlFile => Path.Combine(DataDir, "admin.url");

    /// <summary>The admin listener's base URL, as the node wrote it to admin.url once it was listening.</summary>
    public string AdminUrl { get; private set; } = "";

    public string UnixUri(string export = "vol0") => $"nbd+unix:///{export}?socket={SocketPath}";
    public string TcpUri(string export = "vol0") => $"nbd://127.0.0.1:{TcpPort}/{export}";

    public static string NodeDll
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            var configuration = dir.Parent!.Name; // .../bin/<Configuration>/net10.0/
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ActorCache.sln"))) dir = dir.Parent;
            if (dir is null) throw new InvalidOperationException("cannot find the repository root above " + AppContext.BaseDirectory);
            return Path.Combine(dir.FullName, "src", "ActorCache", "bin", configuration, "net10.0", "ActorCache.dll");
        }
    }

    /// <summary>The node's /metrics as a map from series (<c>name{labels}</c>) to value.</summary>
    public async Task<Dictionary<string, double>> MetricsAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        return ParseMetrics(await http.GetStringAsync(AdminUrl + "/metrics"));
    }

    /// <summary>Every sample of a Prometheus text exposition, by series.</summary>
    public static Dictionary<string, double> ParseMetrics(string text)
    {
        var samples = new Dictionary<string, double>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var space = line.LastIndexOf(' ');
            samples[line[..space]] = double.Parse(line[(space + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        return samples;
    }

    public static string NewDataDir() => Directory.CreateTempSubdirectory("actorcache-it-").FullName;

    private static readonly HashSet<int> HandedOut = [];

    /// <summary>
    /// A port free now and not handed out before in this test run: the kernel may give a port just released to the next
    /// caller, so two nodes started together could get the same one (it happened: "address already in use"). It is taken
    /// below the kernel's ephemeral range, where no bind to port 0 and no outgoing connection of another node can take it
    /// between this check and the node's own bind (that happened too, to a seed's cluster port in the ephemeral range).
    /// </summary>
    public static int FreePort()
    {
        var (low, count) = PortsBelowEphemeral();
        for (var attempt = 0; attempt < 1000; attempt++)
        {
            var port = count > 0 ? low + Random.Shared.Next(count) : 0;
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                port = ((IPEndPoint)listener.LocalEndpoint).Port;
            }
            catch (SocketException)
            {
                continue; // in use: another one
            }
            lock (HandedOut)
                if (HandedOut.Add(port)) return port;
        }
        throw new InvalidOperationException("no free TCP port found on loopback");
    }

    /// <summary>Ports from 10000 up to the start of <c>ip_local_port_range</c>; none (0 ports) when that range starts too low.</summary>
    private static (int Low, int Count) PortsBelowEphemeral()
    {
        try
        {
            var ephemeralStart = int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0]);
            return ephemeralStart > 11000 ? (10000, ephemeralStart - 10000) : (0, 0);
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
        {
            return (0, 0);
        }
    }

    /// <summary>
    /// Starts <c>serve</c> with the node's own data directory and listeners plus <paramref name="extraArgs"/>, without waiting.
    /// The admin listener takes any free port unless <paramref name="admin"/> says otherwise (null: the node's default).
    /// </summary>
    /// <paramref name="netns"/>: run it inside that network namespace (<c>ip netns exec NETNS dotnet ...</c>; <c>ip</c> execs dotnet,
    /// so <see cref="Pid"/> is the node's own); its loopback must be up for the admin and TCP listeners.
    public static NodeProcess Launch(string dataDir, IEnumerable<string> extraArgs, int? port = null, bool defaultListeners = true,
        string? admin = "127.0.0.1:0", string? netns = null)
    {
        var tcpPort = port ?? FreePort();
        var start = StartInfo(dataDir);
        if (netns is not null)
        {
            start.FileName = IpCommand;
            foreach (var arg in new[] { "netns", "exec", netns, "dotnet" }) start.ArgumentList.Add(arg);
        }
        foreach (var arg in new[] { NodeDll, "serve", "--data-dir", dataDir }) start.ArgumentList.Add(arg);
        if (defaultListeners)
            foreach (var arg in new[] { "--listen", $"unix:{Path.Combine(dataDir, "nbd.sock")}", "--listen", $"tcp://127.0.0.1:{tcpPort}" })
                start.ArgumentList.Add(arg);
        if (admin is not null)
            foreach (var arg in new[] { "--admin", admin }) start.ArgumentList.Add(arg);
        var extra = extraArgs.ToList();
        if (!extra.Contains("--cluster"))
            foreach (var arg in new[] { "--cluster", "127.0.0.1:0" }) start.ArgumentList.Add(arg);
        foreach (var arg in extra) start.ArgumentList.Add(arg);
        return Run(start, dataDir, tcpPort);
    }

    /// <summary>iproute2's <c>ip</c>, by its full path: /usr/sbin may not be on the test runner's PATH.</summary>
    public static string IpCommand =>
        new[] { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" }.FirstOrDefault(File.Exists) ?? "ip";

    private static ProcessStartInfo StartInfo(string dataDir)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = dataDir,
        };
        // No diagnostics IPC: a node the tests SIGKILL would leave its clr-debug-pipe-* and
        // dotnet-diagnostic-* files in /tmp, dozens per run.
        start.Environment["DOTNET_EnableDiagnostics"] = "0";
        return start;
    }

    /// <summary>Starts the process and follows its output lines.</summary>
    private static NodeProcess Run(ProcessStartInfo start, string dataDir, int tcpPort)
    {
        var process = Process.Start(start)!;
        var node = new NodeProcess(process, dataDir, tcpPort);
        process.OutputDataReceived += (_, e) => node.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => node.OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return node;
    }

    /// <summary>
    /// Starts <c>actorcache</c> with exactly <paramref name="args"/> and <paramref name="environment"/> (nothing added), as a
    /// container runs its command: the k8s tests start the StatefulSet's pods this way. <paramref name="tcpPort"/> is where it serves NBD.
    /// </summary>
    public static NodeProcess LaunchExactly(string dataDir, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment, int tcpPort)
    {
        var start = StartInfo(dataDir);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        start.ArgumentList.Add(NodeDll);
        foreach (var arg in args) start.ArgumentList.Add(arg);
        return Run(start, dataDir, tcpPort);
    }

    public bool HasExited => _process.HasExited;

    /// <summary>Starts a node and waits until its admin listener answers and every volume is open (or offline).</summary>
    public static async Task<NodeProcess> StartAsync(string dataDir, params string[] extraArgs)
    {
        var node = Launch(dataDir, extraArgs);
        await node.WaitReadyAsync();
        return node;
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        _output.Enqueue(line);
        // The admin listener starts once NBD is served and every volume is started; the volumes may still be opening then.
        if (line.Contains("admin listening on", StringComparison.Ordinal)) _adminReady.TrySetResult();
        if (line.Contains("node serving ", StringComparison.Ordinal)) _volumesOpen.TrySetResult();
    }

    /// <summary>Waits until the admin listener answers and every volume has opened (or failed to).</summary>
    public async Task WaitReadyAsync()
    {
        await WaitAdminAsync();
        await WaitForAsync(_volumesOpen.Task, "open its volumes", TimeSpan.FromSeconds(120));
    }

    /// <summary>Waits until the admin listener answers (volumes may still be opening).</summary>
    public async Task WaitAdminAsync()
    {
        await WaitForAsync(_adminReady.Task, "start", TimeSpan.FromSeconds(60));
        AdminUrl = (await File.ReadAllTextAsync(AdminUrlFile)).Trim();
    }

    /// <summary>Waits until the node is Up in its cluster: until then /health answers 503 `cluster: joining`.</summary>
    public async Task WaitJoinedAsync()
    {
        if (!await ShowsAsync(" is Up in the cluster at ", TimeSpan.FromSeconds(30)))
            throw new InvalidOperationException($"node did not join its cluster within 30 s:\n{Output}");
    }

    /// <summary>Waits until every volume has opened (or failed to).</summary>
    public Task WaitVolumesOpenAsync(TimeSpan timeout) => WaitForAsync(_volumesOpen.Task, "open its volumes", timeout);

    /// <summary>
    /// Whether the node's output shows <paramref name="text"/> within <paramref name="timeout"/>. What the actors log goes
    /// through Akka's logging, so it may come after the node's own "serving" line, which the start waits for.
    /// </summary>
    public async Task<bool> ShowsAsync(string text, TimeSpan? timeout = null)
    {
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); !Output.Contains(text, StringComparison.Ordinal); await Task.Delay(100))
            if (waited.Elapsed > (timeout ?? TimeSpan.FromSeconds(30))) return false;
        return true;
    }

    private async Task WaitForAsync(Task what, string doing, TimeSpan timeout)
    {
        var exited = _process.WaitForExitAsync();
        var done = await Task.WhenAny(what, exited, Task.Delay(timeout));
        if (done != what)
            throw new InvalidOperationException($"node did not {doing} ({(done == exited ? $"exit {_process.ExitCode}" : "timeout")}):\n{Output}");
    }

    /// <summary>Waits for the process to end by itself and returns its exit code.</summary>
    public async Task<int> WaitExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            // A node that should have exited and did not must not outlive the test.
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"node did not exit within {timeout}:\n{Output}");
        }
        _process.WaitForExit(); // drain output
        return _process.ExitCode;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    /// <summary>Sends SIGTERM and returns the exit code and how long the graceful stop took.</summary>
    public async Task<(int ExitCode, TimeSpan Took)> StopAsync(TimeSpan? timeout = null)
    {
        if (_process.HasExited) return (_process.ExitCode, TimeSpan.Zero);
        var watch = Stopwatch.StartNew();
        kill(_process.Id, 15);
        var code = await WaitExitAsync(timeout ?? TimeSpan.FromSeconds(30));
        return (code, watch.Elapsed);
    }

    /// <summary>Sends <paramref name="signal"/> to the node, as kill(1) would; false once the process is gone.</summary>
    public bool Signal(int signal) => !_process.HasExited && kill(_process.Id, signal) == 0;

    /// <summary>SIGKILL: no chance to flush or close anything.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        kill(_process.Id, 9);
        await WaitExitAsync(TimeSpan.FromSeconds(30));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited) await StopAsync();
        }
        catch (TimeoutException)
        {
            // WaitExitAsync killed it already.
        }
        _process.Dispose();
    }
}
