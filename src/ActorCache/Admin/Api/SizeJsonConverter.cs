using System.Text.Json;
using System.Text.Json.Serialization;
using ActorCache.Blocks;

namespace ActorCache.Admin.Api;

/// <summary>A size in a request: a number of bytes, or a string with a unit as on the command line (<c>"512M"</c>, <c>"10G"</c>). Written as bytes.</summary>
public sealed class SizeJsonConverter : JsonConverter<long>
{
    public override long Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var bytes)) return bytes;
        if (reader.TokenType == JsonTokenType.String)
            // "0" as 0 (a rate's "no limit"), as the number 0 is: what a size must be is checked where it is used.
            return ByteSize.TryParse(reader.GetString(), out bytes, out var error, allowZero: true) ? bytes : throw new JsonException(error);
        throw new JsonException("size must be a whole number of bytes or a string such as \"10G\"");
    }

    public override void Write(Utf8JsonWriter writer, long value, JsonSerializerOptions options) => writer.WriteNumberValue(value);
}
