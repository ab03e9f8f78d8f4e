#!/usr/bin/env bash
# Fuzzes distilld's parsers of untrusted input with libFuzzer + AddressSanitizer for a fixed budget (issue #7).
#
#   scripts/fuzz.sh [SECONDS]        # SECONDS per target, default 60
#   FUZZ_TARGETS="FuzzConfig" scripts/fuzz.sh 300
#
# Targets (Fuzz/Sources/*): FuzzSampleDecoder (SampleDecoder.decode and decodeLabel), FuzzTeacherRecord
# (TeacherRecord.decode) and FuzzConfig (DistillConfig.parse and TopicCatalog.parse). Each one starts from its seeds in
# Tests/FuzzCorpus/<target> (read only) plus what earlier runs found in Fuzz/.build/corpus/<target> (kept, not
# committed). Prints one `figure:` line per target and exits non-zero if any target crashed, leaked, hung or broke an
# invariant; the input is left in Fuzz/.build/artifacts/<target>/. To keep it as a regression seed, minimize it
# (`Fuzz/.build/release/<target> -minimize_crash=1 -runs=10000 <file>`) and copy it into Tests/FuzzCorpus/<target>/.
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
    '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac
targets="${FUZZ_TARGETS:-FuzzSampleDecoder FuzzTeacherRecord FuzzConfig}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh >/dev/null # FuzzConfig links librdkafka

scratch="$root/Fuzz/.build"
swift build -c release --package-path Fuzz --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address 2>&1 \
    | grep -v "Cannot export local symbol '__asan_extra_spill_area'" # a harmless ld.gold warning on every link
bin="$(swift build -c release --package-path Fuzz --scratch-path "$scratch" --show-bin-path)"

dictionary() {
    case "$1" in
        FuzzConfig) echo "$root/Fuzz/Dictionaries/yaml.dict" ;;
        *) echo "$root/Fuzz/Dictionaries/json.dict" ;;
    esac
}

failed=0
for target in $targets; do
    seeds="$root/Tests/FuzzCorpus/$target"
    work="$scratch/corpus/$target"
    artifacts="$scratch/artifacts/$target"
    log="$scratch/logs/$target.log"
    [ -d "$seeds" ] || { echo "fuzz.sh: no seed corpus $seeds" >&2; exit 2; }
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    rm -f "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*

    # New inputs go to the first corpus folder ($work), so the committed seeds stay as they are.
    # SWIFT_BACKTRACE=enable=no: let libFuzzer, not Swift's backtracer, handle a fatalError's signal.
    status=0
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
        "$bin/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        -dict="$(dictionary "$target")" -artifact_prefix="$artifacts/" "$work" "$seeds" >"$log" 2>&1 || status=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    corpus=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    found=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
        | sort)
    crashes=$(grep -c . <<<"$found" || true)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    echo "figure: fuzz target=$target seconds=$seconds execs=${execs:-0} crashes=$crashes corpus=${corpus:-?}" \
        "cov=${cov:-?} exec_per_s=${rate:-0}"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        echo "fuzz.sh: $target failed (libFuzzer exit $status); log $log" >&2
        [ -n "$found" ] && echo "$found" | sed 's/^/  input: /' >&2
        grep -E -m 12 'ERROR: |invariant violated|Fatal error|SUMMARY|^ *#[0-9]+ 0x' "$log" | sed 's/^/  /' >&2 || true
    fi
done
exit "$failed"
