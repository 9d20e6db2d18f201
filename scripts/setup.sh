#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine: system packages + the Python test venv.
# Safe to run repeatedly and from any directory.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"

log() { printf '[setup] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# --- system packages -------------------------------------------------------
APT_PACKAGES=(libzmq3-dev)
# Headless Chromium renders the status page in tests/test_status_page.py.
APT_PACKAGES+=(chromium)
# Debian's own python3 needs python3-venv for `python3 -m venv` (pyenv/conda builds ship it).
if ! "${PYTHON:-python3}" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-venv python3-pip)
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q "${missing[@]}"
else
    log "system packages present: ${APT_PACKAGES[*]}"
fi

# --- Python venv -----------------------------------------------------------
PYTHON="${PYTHON:-python3}"
VENV="$REPO/.venv"
STAMP="$VENV/.ganymede-setup-v1"

# Requirements (one per line). Changing this list re-runs the pip step.
REQUIREMENTS="ipykernel
jupyter_client
jupyter_server
nbclient
papermill
nbformat
websocket-client
requests
pytest
pytest-timeout
tornado
pycryptodomex
pyyaml
kubernetes-validate
helm-python-sdk==0.2.2
dockerfile"
# Installed with --no-deps: only its client and itests are used.
NODEPS_REQUIREMENTS="jupyter_enterprise_gateway==3.3.0"

REQ_HASH="$(printf '%s\n--no-deps\n%s\n%s\n' "$REQUIREMENTS" "$NODEPS_REQUIREMENTS" "$("$PYTHON" --version 2>&1)" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQ_HASH" ]; then
    log "python requirements up to date (stamp $STAMP)"
else
    log "installing python requirements"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q $REQUIREMENTS
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q --no-deps $NODEPS_REQUIREMENTS
    "$VENV/bin/python" - <<'PY'
import enterprise_gateway.client.gateway_client  # noqa: F401
import ipykernel, jupyter_client, jupyter_server, websocket, requests, pytest, pytest_timeout  # noqa: F401,E401
import yaml, kubernetes_validate, helm_python, dockerfile  # noqa: F401,E401  (tests/test_helm_chart.py)
print("[setup] imports ok (ipykernel %s, jupyter_server %s)" % (ipykernel.__version__, jupyter_server.__version__))
PY
    printf '%s\n' "$REQ_HASH" > "$STAMP"
    log "python requirements installed"
fi
log "done"
