#!/usr/bin/env bash
# THE test command: setup, swift build, swift test, then the Python end-to-end suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k websocket).
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO" || exit 1

bash scripts/setup.sh || { echo "[test] setup failed"; exit 1; }
export PATH="$REPO/.venv/bin:$PATH"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# One build for everything: `swift build` and `swift test` use different settings, so building
# with --build-tests once and running `swift test --skip-build` avoids compiling every package twice.
echo "[test] swift build --build-tests"
if ! swift build --build-tests; then
    echo "[test] swift build FAILED"
    echo "0 passed, 1 failed"
    exit 1
fi

echo "[test] swift test"
swift test --skip-build 2>&1 | tee "$TMP/swift-test.log"
swift_rc=${PIPESTATUS[0]}

export GANYMEDE_BIN="$REPO/.build/debug/ganymede"
echo "[test] pytest (GANYMEDE_BIN=$GANYMEDE_BIN)"
if [ ! -x "$GANYMEDE_BIN" ]; then
    echo "[test] $GANYMEDE_BIN is missing after swift build"
fi
python -m pytest tests/ -v --junitxml="$TMP/junit.xml" "$@"
pytest_rc=$?
if [ ! -x "$GANYMEDE_BIN" ]; then
    pytest_rc=1  # every e2e test would have been skipped
fi

read -r passed failed skipped < <(python scripts/summarize_tests.py "$TMP/swift-test.log" "$swift_rc" "$TMP/junit.xml" "$pytest_rc")

rc=0
if [ "$swift_rc" -ne 0 ] || [ "$pytest_rc" -ne 0 ]; then
    rc=1
fi
summary="$passed passed, $failed failed"
if [ "${skipped:-0}" -gt 0 ]; then
    summary="$summary, $skipped skipped"
fi
echo "$summary"
exit "$rc"
