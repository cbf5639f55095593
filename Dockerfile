# ActorCache node image: `docker build -t REGISTRY/actorcache:TAG .` (see README, Kubernetes).
# Build stage: the SDK publishes the node (framework-dependent, Release).
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY Directory.Build.props Directory.Packages.props ./
COPY src/ src/
COPY hocon/ hocon/
RUN dotnet publish src/ActorCache/ActorCache.csproj -c Release -o /app

# Run stage: the ASP.NET Core runtime (the admin listener is Kestrel), a non-root user, the HOCON defaults.
FROM mcr.microsoft.com/dotnet/aspnet:10.0
ARG UID=10001
RUN groupadd --gid ${UID} actorcache \
 && useradd --uid ${UID} --gid ${UID} --no-create-home --home-dir /var/lib/actorcache --shell /usr/sbin/nologin actorcache \
 && mkdir -p /var/lib/actorcache /etc/actorcache \
 && chown ${UID}:${UID} /var/lib/actorcache
COPY --from=build /app /app
# The reference configuration (every key with its default) next to the binary, where the node reads it.
COPY hocon/ /app/hocon/
RUN ln -s /app/ActorCache /usr/local/bin/actorcache
ENV DOTNET_EnableDiagnostics=0 \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
USER ${UID}:${UID}
WORKDIR /var/lib/actorcache
VOLUME /var/lib/actorcache
# nbd, Akka remoting, Akka management (cluster bootstrap), admin (/health, /metrics, /api)
EXPOSE 10809 4053 8558 9460
ENTRYPOINT ["actorcache", "serve"]
CMD ["--data-dir", "/var/lib/actorcache", "--listen", "tcp://0.0.0.0:10809", "--admin", "0.0.0.0:9460"]
