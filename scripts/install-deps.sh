#!/usr/bin/env bash
# Installs what distilld needs beyond the Swift toolchain, only when it is missing:
# librdkafka-dev (the Kafka client library and its mock cluster), kcat (an independent Kafka client used by the
# interoperability tests) and pkg-config. Python's safetensors and jsonschema are optional: tests use them to prove
# that others can load student checkpoints and that records match streams/schemas, and skip when they are absent.
set -euo pipefail

need=()
pkg-config --exists rdkafka 2>/dev/null || need+=(librdkafka-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v kcat >/dev/null 2>&1 || need+=(kcat)

if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

version=$(pkg-config --modversion rdkafka)
case "$version" in
    2.*) ;;
    *) echo "librdkafka $version found; distilld is built and tested against 2.0.2" >&2 ;;
esac

# Python is optional: the tests that use it (safetensors loading, JSON Schema validation) skip with a note.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import safetensors, numpy, jsonschema' >/dev/null 2>&1; then
    python3 -m pip install -q safetensors numpy jsonschema >/dev/null 2>&1 \
        || echo "note: python safetensors/jsonschema not installed; the tests that use them will be skipped" >&2
fi
