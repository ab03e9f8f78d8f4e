#!/usr/bin/env bash
# The long reliability suite (`make reliability`): kill -9 ×20 over 100,000 samples, SIGTERM ×20, 100,000 records
# with 10% mutated, broker outages of 1/5/30 s and beyond the message timeout (outputs in flight: the output leader
# down 20 s, so the daemon stops on the failed delivery and is restarted), leader churn for a minute, broker latency
# 0/300 ms/2 s with produce→alert latency p50/p99, overload at twice the measured processing rate for 60 s, a 20 min
# soak, state-store faults, then the libFuzzer targets. Prints every `figure:` line as a table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
log=$(mktemp -t distilld-reliability.XXXXXX)
swift build --build-tests
status=0
# One test at a time: the memory figures are this process's RSS.
DISTILLD_RELIABILITY=long swift test --skip-build --disable-xctest --no-parallel \
    --filter 'CrashRecoveryTests|ShutdownTests|HostileInputTests|OutageTests|StateStoreFailureTests|StateStoreTests' \
    2>&1 | tee "$log" | grep -E '^(figure:|✘|✔ Test run)' || status=1
grep -q '✘' "$log" && status=1
bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}" 2>&1 | tee -a "$log" | grep -E '^figure:' || status=1

echo
echo "| test | figures |"
echo "|---|---|"
grep -E '^figure:' "$log" | sed -E 's/^figure: //' | while read -r line; do
    echo "| ${line%% *} | ${line#* } |"
done
echo
[ $status -eq 0 ] && echo "reliability: all passed" || echo "reliability: FAILURES (full log: $log)"
exit $status
