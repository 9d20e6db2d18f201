#!/usr/bin/env bash
# One command for issue #13: install the peers (PyPI) into Benchmarks/.venv-bench, build Ganymede (release) unless
# a binary is given, run every scenario interleaved, and write docs/PERFORMANCE.md and docs/perf/*.png.
#
#   Benchmarks/run.sh                          # builds .build/release/ganymede of this checkout
#   GANYMEDE_BINARY=/path/to/ganymede Benchmarks/run.sh [bench.py options...]
#   CODEC=1 Benchmarks/run.sh                  # also runs the ordo-one/benchmark codec micro benchmarks
#   REMOTE=1 Benchmarks/run.sh                 # also reruns Benchmarks/remote_start (root: a test sshd on 127.0.0.2)
#
# Benchmarks are not tests: nothing here is run by scripts/test.sh or CI, and this script never fails a build.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENVS="$HERE/.venv-bench"
PY="${PYTHON:-python3}"

log() { printf '[bench] %s\n' "$*"; }

# The peers pin conflicting jupyter_client versions (EG 3.3.0: <7; KG 3.0.1: >=8.6), so each gets its own venv.
make_venv() {  # name, requirements...
    local name="$1"; shift
    local stamp="$VENVS/$name/.bench-$(printf '%s ' "$@" | sha256sum | cut -c1-12)"
    if [ ! -f "$stamp" ]; then
        log "venv $name: $*"
        "$PY" -m venv "$VENVS/$name"
        "$VENVS/$name/bin/pip" install -q --upgrade pip
        "$VENVS/$name/bin/pip" install -q "$@"
        touch "$stamp"
    fi
}
mkdir -p "$VENVS"
make_venv drv ipykernel jupyter_client websocket-client websockets requests psutil matplotlib py-spy
make_venv eg "jupyter_enterprise_gateway==3.3.0"
make_venv kg "jupyter_kernel_gateway==3.0.1"
make_venv jv "jupyverse==0.14.*" fps-kernels fps-noauth

BIN="${GANYMEDE_BINARY:-}"
if [ -z "$BIN" ]; then
    log "building Ganymede (release)"
    (cd "$REPO" && swift build -c release)
    BIN="$REPO/.build/release/ganymede"
fi

mkdir -p "$HERE/results"
log "running the side-by-side benchmark (about 30 minutes on 2 cores)"
"$VENVS/drv/bin/python" "$HERE/bench.py" --binary "$BIN" --out "$HERE/results/results.json" "$@" \
    2>&1 | tee "$HERE/results/run.log"

if [ "${CODEC:-0}" = "1" ]; then
    log "codec micro benchmarks (Benchmarks/Codec)"
    (cd "$HERE/Codec" && swift package --allow-writing-to-package-directory benchmark --no-progress --format markdown) \
        > "$HERE/results/codec-raw.md" 2>&1 || log "codec benchmarks failed (see results/codec-raw.md)"
    "$VENVS/drv/bin/python" "$HERE/codec_table.py" "$HERE/results/codec-raw.md" > "$HERE/results/codec.md" || true
fi

if [ "${REMOTE:-0}" = "1" ]; then
    # Remote start vs EG over SSH (scripts/remote-test-env.sh's sshd, stopped by the harness). The driver's Python is
    # also the remote kernel's, and the launcher needs pycryptodomex; EG comes from the eg venv above.
    log "remote start vs EG 3.3.0 (Benchmarks/remote_start, ${REMOTE_ROUNDS:-15} rounds)"
    "$VENVS/drv/bin/python" -c "import Cryptodome" 2>/dev/null || "$VENVS/drv/bin/pip" install -q pycryptodomex
    "$VENVS/drv/bin/python" "$HERE/remote_start/bench.py" --rounds "${REMOTE_ROUNDS:-15}" --binary "$BIN" \
        --eg-python "$VENVS/eg/bin/python" --out "$HERE/remote_start/results.json" \
        2>&1 | tee "$HERE/remote_start/run.log" || log "remote start failed (see remote_start/run.log)"
fi

"$VENVS/drv/bin/python" "$HERE/report.py"
