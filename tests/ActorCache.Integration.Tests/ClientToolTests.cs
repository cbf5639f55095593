using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>One node with a few volumes, driven by NBD clients nobody here wrote.</summary>
public sealed class ClientToolFixture : IAsyncLifetime
{
    public NodeProcess Node { get; private set; } = null!;
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public async Task InitializeAsync()
    {
        var roBacking = Path.Combine(_dataDir, "ro-backing.img");
        await File.WriteAllBytesAsync(roBacking, Tool.RandomBytes(4 << 20, 42));
        Node = await NodeProcess.StartAsync(_dataDir,
            "--volume", "vol0:1G", "--volume", "small:64M:pass-through", "--volume", $"ro:4M:pass-through:backing={roBacking}:read-only");
    }

    public async Task DisposeAsync()
    {
        await Node.DisposeAsync();
        Directory.Delete(_dataDir, recursive: true);
    }
}

public sealed class ClientToolTests(ClientToolFixture fixture) : IClassFixture<ClientToolFixture>
{
    private NodeProcess Node => fixture.Node;
    private string Work => Directory.CreateTempSubdirectory("actorcache-work-").FullName;

    [Fact]
    public async Task Nbdinfo_lists_every_volume_and_reports_every_capability()
    {
        var list = await Tool.CheckAsync("nbdinfo", "--list", "--json", Node.TcpUri(""));
        var names = JsonDocument.Parse(list).RootElement.GetProperty("exports").EnumerateArray()
            .Select(e => e.GetProperty("export-name").GetString()).ToList();
        Assert.Equal(["ro", "small", "vol0"], names.Order());

        var info = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--json", Node.UnixUri("vol0"))).RootElement;
        Assert.True(info.GetProperty("structured").GetBoolean());
        var export = info.GetProperty("exports")[0];
        Assert.Equal(1L << 30, export.GetProperty("export-size").GetInt64());
        foreach (var capability in new[] { "can_cache", "can_df", "can_fast_zero", "can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero" })
            Assert.True(export.GetProperty(capability).GetBoolean(), capability);
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
        Assert.Contains("base:allocation", export.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal(512, export.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal(32 << 20, export.GetProperty("block_size_maximum").GetInt32());

        var ro = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--json", Node.UnixUri("ro"))).RootElement.GetProperty("exports")[0];
        Assert.True(ro.GetProperty("is_read_only").GetBoolean());

        // The empty export name is not vol0 by accident: with three volumes the default is vol0 by configuration.
        var byDefault = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--json", $"nbd://127.0.0.1:{Node.TcpPort}")).RootElement;
        Assert.Equal(1L << 30, byDefault.GetProperty("exports")[0].GetProperty("export-size").GetInt64());
    }

    [Fact]
    public async Task Nbdcopy_round_trips_random_data_and_qemu_img_agrees()
    {
        var work = Work;
        var source = Path.Combine(work, "in.img");
        var back = Path.Combine(work, "out.img");
        await File.WriteAllBytesAsync(source, Tool.RandomBytes(64 << 20, 7));
        await Tool.CheckAsync("nbdcopy", "--connections=4", "--flush", source, Node.UnixUri("small"));
        await Tool.CheckAsync("nbdcopy", Node.TcpUri("small"), back);
        Assert.Equal(Tool.Sha256(source), Tool.Sha256(back));
        await Tool.CheckAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", source, Node.TcpUri("small"));

        // A differing byte is seen by qemu-img, so the comparison above means something.
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1048576 512", Node.TcpUri("small"));
        var differs = await Tool.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, Node.TcpUri("small")]);
        Assert.Equal(1, differs.ExitCode);
        Directory.Delete(work, recursive: true);
    }

    [Fact]
    public async Task Qemu_io_handles_odd_offsets_and_512_byte_writes()
    {
        var uri = Node.TcpUri("vol0");
        var commands = new[]
        {
            "write -P 0x11 512 512", "write -P 0x22 1536 512", "write -P 0x33 12345 1000", "write -P 0x44 1048575 3",
            "read -P 0x11 512 512", "read -P 0x22 1536 512", "read -P 0x00 1024 512", "read -P 0x33 12345 1000",
            "read -P 0x44 1048575 3", "read -P 0x00 1048578 510", "flush",
        };
        var args = new List<string> { "-f", "raw" };
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        args.Add(uri);
        var result = await Tool.RunAsync("qemu-io", args);
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.DoesNotContain("Pattern verification failed", result.Output);
        Assert.DoesNotContain("failed", result.Output);
    }

    [Fact]
    public async Task Fio_verifies_crc32c_over_several_jobs_and_connections()
    {
        var result = await Tool.RunAsync("fio", [
            "--name=verify", "--ioengine=nbd", $"--uri={Node.UnixUri("vol0")}", "--rw=randwrite", "--bs=4k", "--iodepth=16",
            "--numjobs=4", "--size=16m", "--offset_increment=64m", "--offset=256m", "--verify=crc32c", "--do_verify=1",
            "--verify_fatal=1", "--group_reporting", "--output-format=json",
        ], TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, result.Output);
        var job = JsonDocument.Parse(result.Stdout[result.Stdout.IndexOf('{')..]).RootElement.GetProperty("jobs")[0];
        Assert.Equal(0, job.GetProperty("error").GetInt32());
        Assert.Equal(4 * (16 << 20), job.GetProperty("write").GetProperty("io_bytes").GetInt64());
        Assert.Equal(4 * (16 << 20), job.GetProperty("read").GetProperty("io_bytes").GetInt64()); // the verify pass
    }

    [Fact]
    public async Task Nbdsh_bad_requests_get_the_specified_error_codes()
    {
        var script = Path.Combine(AppContext.BaseDirectory, "scripts", "nbd_errors.py");
        var result = await Tool.RunAsync("env", [
            $"RW_URI={Node.UnixUri("small")}", $"RO_URI={Node.UnixUri("ro")}", "nbdsh", "-c", $"exec(open('{script}').read())",
        ]);
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Contains("all error codes as specified", result.Stdout);
    }

    [Fact]
    public async Task Block_status_maps_holes_and_data()
    {
        await Tool.CheckAsync("qemu-io", "-f", "raw", "-c", "write -P 0x77 8388608 1048576", Node.TcpUri("vol0"));
        var map = await Tool.CheckAsync("nbdinfo", "--map", Node.UnixUri("vol0"));
        Assert.Contains("8388608     1048576    0  data", map.Replace("\t", " "));
    }
}
