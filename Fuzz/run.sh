#!/usr/bin/env bash
# Builds the libFuzzer targets with AddressSanitizer and runs each for a set time.
#
#   Fuzz/run.sh [seconds per target, default 300] [target ...]
#
# Targets: FuzzWebSocket FuzzWire FuzzLauncher FuzzRESTBody (default: all). The build goes to
# .build-fuzz/; each run starts from the committed seed corpus (Fuzz/corpus/<kind>) copied to
# .build-fuzz/corpus/<kind>, so the committed corpus only changes by hand. A crash leaves its
# input in Fuzz/crashes/ and the script exits non-zero. Results: Fuzz/results.md (appended).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-300}"
shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(FuzzWebSocket FuzzWire FuzzLauncher FuzzRESTBody)

kind() {
    case "$1" in
        FuzzWebSocket) echo websocket ;; FuzzWire) echo wire ;; FuzzLauncher) echo launcher ;; FuzzRESTBody) echo rest-body ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
}

FLAGS=(--scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING)
mkdir -p Fuzz/crashes .build-fuzz
status=0
{
    echo
    echo "## $(date -u +%Y-%m-%dT%H:%MZ), ${SECONDS_PER_TARGET}s per target, $(swift --version 2>/dev/null | head -1)"
    echo
    echo "| target | executions | exec/s | coverage (edges) | corpus | result |"
    echo "|---|---:|---:|---:|---:|---|"
} >> Fuzz/results.md.tmp
for target in "${TARGETS[@]}"; do
    k="$(kind "$target")"
    echo "[fuzz] building $target"
    if ! swift build "${FLAGS[@]}" --product "$target" > ".build-fuzz/$target.build.log" 2>&1; then
        grep -v "Cannot export local symbol" ".build-fuzz/$target.build.log" | tail -20
        exit 2
    fi
    work=".build-fuzz/corpus/$k"
    mkdir -p "$work"
    cp -n Fuzz/corpus/"$k"/* "$work"/ 2>/dev/null || true
    log=".build-fuzz/$target.log"
    echo "[fuzz] running $target for ${SECONDS_PER_TARGET}s (log: $log)"
    set +e
    LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp" ".build-fuzz/debug/$target" "$work" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="Fuzz/crashes/$target-" -print_final_stats=1 > "$log" 2>&1
    rc=$?
    set -e
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || echo '?')"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || echo '?')"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')"
    corpus="$(find "$work" -type f | wc -l)"
    if [ "$rc" -eq 0 ]; then result="no crash, no sanitizer report"; else result="**FAILED (exit $rc)**, see Fuzz/crashes/"; status=1; fi
    echo "| $target | $execs | $rate | $cov | $corpus | $result |" >> Fuzz/results.md.tmp
    echo "[fuzz] $target: $execs executions, $result"
done
echo >> Fuzz/results.md.tmp
echo "Command: \`Fuzz/run.sh $SECONDS_PER_TARGET ${TARGETS[*]}\`" >> Fuzz/results.md.tmp
[ -f Fuzz/results.md ] || printf '# Fuzzing results\n\nAppended by Fuzz/run.sh (libFuzzer + AddressSanitizer, seeds from Fuzz/corpus).\n' > Fuzz/results.md
cat Fuzz/results.md.tmp >> Fuzz/results.md
rm -f Fuzz/results.md.tmp
exit $status
