#!/usr/bin/env bash
# Build Ganymede (debug, the configuration CI tests; GANYMEDE_BUILD_CONFIG=release for an optimised build)
# and serve it on 127.0.0.1:8888 with the venv's python3 (ipykernel) on PATH.
# Extra arguments are passed to ganymede (e.g. scripts/serve.sh --auth-token T --port 9999).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"

bash scripts/setup.sh
swift build -c "${GANYMEDE_BUILD_CONFIG:-debug}"

# EG refuses KERNEL_USERNAME=root by default, and a request without KERNEL_USERNAME runs as the
# gateway's user. Run as root (a fresh machine, a container), that would refuse every kernel
# start from clients that send no KERNEL_USERNAME (jupyter_server does not). This dev script
# serves loopback only, so it lifts that default for root unless you set the list yourself.
EXTRA=()
if [ "$(id -u)" -eq 0 ] && [ -z "${EG_UNAUTHORIZED_USERS+x}${GANYMEDE_UNAUTHORIZED_USERS+x}" ]; then
    echo "[serve] running as root: serving with --unauthorized-users '' (set EG_UNAUTHORIZED_USERS to override)" >&2
    EXTRA=(--unauthorized-users "")
fi
exec env PATH="$REPO/.venv/bin:$PATH" ".build/${GANYMEDE_BUILD_CONFIG:-debug}/ganymede" --ip 127.0.0.1 --port 8888 "${EXTRA[@]}" "$@"
