# Ganymede gateway image: the release binary, the bundled python3 kernelspec and ipykernel.
#
#   docker build -t ganymede:0.1.0 .
#   docker run --rm -p 8888:8888 -e GANYMEDE_AUTH_TOKEN=change-me ganymede:0.1.0
#
# The Helm chart in helm/ganymede runs this image (see helm/ganymede/README.md).

# ---------------------------------------------------------------------------- build
FROM swift:6.1-bookworm AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libzmq3-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Dependencies first, so that a source change does not fetch them again.
COPY Package.swift ./
RUN swift package resolve
# Tests/ too: the manifest declares the test targets, and SwiftPM checks their directories.
COPY Sources ./Sources
COPY Tests ./Tests
# The Swift runtime and Foundation are linked in: the runtime image needs no Swift toolchain.
RUN swift build -c release --product ganymede --static-swift-stdlib \
 && mkdir -p /staging/bin \
 && cp "$(swift build -c release --product ganymede --static-swift-stdlib --show-bin-path)/ganymede" /staging/bin/ \
 && cp /usr/libexec/swift/linux/swift-backtrace-static /staging/bin/

# ---------------------------------------------------------------------------- runtime
FROM debian:bookworm-slim

# libzmq5: the kernels' ZeroMQ channels. python3-ipykernel: the bundled python3 kernelspec
# (Debian's package: no pip in the image). tini: PID 1, reaps orphaned kernel processes and
# passes SIGTERM on, so the gateway drains.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libzmq5 python3 python3-ipykernel tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A non-root user with a fixed uid, so that Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 ganymede \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/ganymede --create-home \
      --shell /usr/sbin/nologin ganymede

COPY --from=build /staging/bin/ganymede /staging/bin/swift-backtrace-static /usr/local/bin/
# Found by the gateway next to its executable (<prefix>/share/ganymede/kernelspecs).
COPY kernelspecs/python3 /usr/local/share/ganymede/kernelspecs/python3

USER 10001:10001
WORKDIR /home/ganymede
ENV GANYMEDE_IP=0.0.0.0 \
    GANYMEDE_PORT=8888 \
    SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/local/bin/swift-backtrace-static
EXPOSE 8888

# Docker only (Kubernetes uses the chart's probes). Follows GANYMEDE_PORT, GANYMEDE_BASE_URL
# and the gateway's own TLS (GANYMEDE_CERTFILE).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os, ssl, urllib.request as u; e = os.environ; u.urlopen('%s://127.0.0.1:%s%s/api/health' % ('https' if e.get('GANYMEDE_CERTFILE') else 'http', e.get('GANYMEDE_PORT', '8888'), e.get('GANYMEDE_BASE_URL', '/').rstrip('/')), timeout=4, context=ssl._create_unverified_context())"]

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/ganymede"]
