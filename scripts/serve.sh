#!/usr/bin/env bash
# Build Ganymede (debug, the configuration CI tests; GANYMEDE_BUILD_CONFIG=release for an optimised build)
# and serve it on 127.0.0.1:8888 with the venv's python3 (ipykernel) on PATH.
# Extra arguments are passed to ganymede (e.g. scripts/serve.sh --auth-token T --port 9999).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"

bash scripts/setup.sh
swift build -c "${GANYMEDE_BUILD_CONFIG:-debug}"
exec env PATH="$REPO/.venv/bin:$PATH" ".build/${GANYMEDE_BUILD_CONFIG:-debug}/ganymede" --ip 127.0.0.1 --port 8888 "$@"
