using System.Text.RegularExpressions;
using ActorCache.Blocks;

namespace ActorCache.Volumes;

/// <summary>How a volume stacks its targets (DESIGN §2). Values are persisted: only append.</summary>
public enum VolumeMode
{
    /// <summary>No cache: reads and writes go to the backing; FLUSH is fdatasync of the backing.</summary>
    PassThrough = 0,
    /// <summary>Writes are acknowledged from the RAM ring; FLUSH/FUA make them durable in the log; destaged later.</summary>
    WriteBack = 1,
    /// <summary>A write is acknowledged once it is durable on the backing.</summary>
    WriteThrough = 2,
}

/// <summary>A volume as the registry records it.</summary>
/// <param name="BackingCreated">True when the node created the backing file itself (so deleting the volume may remove it).</param>
public sealed record VolumeDefinition(string Name, long Size, VolumeMode Mode, string BackingPath, bool BackingCreated, bool ReadOnly)
{
    /// <summary>For a clone: the snapshot it was cloned from (it reads through to it until it is independent), else null.</summary>
    public CloneOrigin? Origin { get; init; }

    /// <summary>For a replicated volume: its replicas, primary and protocol (every replica keeps its own copy); null for a volume of this node alone.</summary>
    public ActorCache.Replicas.ReplicaSet? Replicas { get; init; }

    /// <summary>A clone's map of the blocks that are its own, beside its backing.</summary>
    public string CloneMapPath => BackingPath + CloneBacking.MapSuffix;
}

/// <summary>The snapshot a clone started from: <c>VOLUME@SNAPSHOT</c>.</summary>
public sealed record CloneOrigin(string Volume, string Snapshot)
{
    public override string ToString() => $"{Volume}@{Snapshot}";
}

/// <summary>A volume as a user asks for it: <c>NAME:SIZE[:MODE][:backing=PATH][:read-only]</c>.</summary>
public sealed partial record VolumeSpec(string Name, long Size, VolumeMode Mode, string? BackingPath, bool ReadOnly)
{
    public const int AlignmentBytes = 4096;

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();

    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    public static string FormatMode(VolumeMode mode) => mode switch
    {
        VolumeMode.PassThrough => "pass-through",
        VolumeMode.WriteBack => "write-back",
        VolumeMode.WriteThrough => "write-through",
        _ => mode.ToString(),
    };

    public static bool TryParseMode(string text, out VolumeMode mode, out string error)
    {
        error = "";
        switch (text)
        {
            case "pass-through":
                mode = VolumeMode.PassThrough;
                return true;
            case "write-back":
                mode = VolumeMode.WriteBack;
                return true;
            case "write-through":
                mode = VolumeMode.WriteThrough;
                return true;
            default:
                mode = VolumeMode.WriteBack;
                error = $"unknown mode '{text}'; use write-back, write-through or pass-through";
                return false;
        }
    }

    /// <summary>A volume's size as users write it (<c>512M</c>, <c>10G</c>, bytes): a whole number of 4 KiB blocks.</summary>
    public static bool TryParseSize(string name, string text, out long size, out string error)
    {
        if (!ByteSize.TryParse(text, out size, out error))
        {
            error = $"volume {name}: {error}";
            return false;
        }
        return TryCheckSize(name, size, text, out error);
    }

    /// <summary>The checks a size given in bytes passes (<paramref name="text"/> is how the user wrote it, for the message).</summary>
    public static bool TryCheckSize(string name, long size, string text, out string error)
    {
        error = "";
        if (size <= 0) error = $"volume {name}: size must be greater than zero";
        else if (size % AlignmentBytes != 0) error = $"volume {name}: size {text} is not a multiple of 4 KiB";
        return error.Length == 0;
    }

    /// <summary>A volume asked for field by field (the admin API), with the checks and messages of <see cref="TryParse"/>.</summary>
    public static bool TryCreate(string name, long size, string? modeText, string? backing, bool readOnly, out VolumeSpec? spec, out string error)
    {
        spec = null;
        var mode = VolumeMode.WriteBack;
        if (!IsValidName(name))
        {
            error = NameError(name);
            return false;
        }
        if (!TryCheckSize(name, size, size.ToString(System.Globalization.CultureInfo.InvariantCulture), out error)) return false;
        if (modeText is not null && !TryParseMode(modeText, out mode, out error))
        {
            error = $"volume {name}: {error}";
            return false;
        }
        if (backing is { Length: 0 })
        {
            error = $"volume {name}: backing names no path";
            return false;
        }
        spec = new VolumeSpec(name, size, mode, backing, readOnly);
        return true;
    }

    public static string NameError(string name) =>
        $"volume name '{name}' is not allowed; use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit";

    public static bool TryParse(string text, out VolumeSpec? spec, out string error)
    {
        spec = null;
        var parts = text.Split(':');
        if (parts.Length < 2)
        {
            error = $"volume '{text}' needs at least NAME:SIZE, e.g. vol1:10G";
            return false;
        }
        var name = parts[0];
        if (!IsValidName(name))
        {
            error = NameError(name);
            return false;
        }
        if (!TryParseSize(name, parts[1], out var size, out error)) return false;
        var mode = VolumeMode.WriteBack; // the default: the cache is the product
        string? backing = null;
        var readOnly = false;
        for (var i = 2; i < parts.Length; i++)
        {
            var part = parts[i];
            if (part.StartsWith("backing=", StringComparison.Ordinal))
            {
                backing = part["backing=".Length..];
                if (backing.Length == 0) { error = $"volume {name}: backing= names no path"; return false; }
            }
            else if (part is "read-only" or "ro") readOnly = true;
            else if (i == 2)
            {
                if (!TryParseMode(part, out mode, out error)) { error = $"volume {name}: {error}"; return false; }
            }
            else
            {
                error = $"volume {name}: unknown option '{part}'; expected backing=PATH or read-only";
                return false;
            }
        }
        spec = new VolumeSpec(name, size, mode, backing, readOnly);
        error = "";
        return true;
    }
}
