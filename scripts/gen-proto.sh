#!/usr/bin/env bash
# Regenerates the Swift code of the protobuf wire format (proto/distill/v1/records.proto) into
# Sources/DistillWire/Generated/. The generated file is committed: neither builds nor CI run this script, and the
# package depends only on swift-protobuf's runtime library, never on its plugin.
#
# Needs protoc (Debian: apt-get install -y protobuf-compiler) and protoc-gen-swift 1.39.0, the version of the
# runtime in Package.swift. Build the plugin once, outside the repository (about 2-10 minutes on 2 cores):
#   git clone https://github.com/apple/swift-protobuf /tmp/swift-protobuf && cd /tmp/swift-protobuf
#   git checkout 1.39.0 && swift build -c release --product protoc-gen-swift
# and give its path in PROTOC_GEN_SWIFT (default: the first protoc-gen-swift on PATH):
#   PROTOC_GEN_SWIFT=/tmp/swift-protobuf/.build/release/protoc-gen-swift scripts/gen-proto.sh
set -euo pipefail
cd "$(dirname "$0")/.."

plugin="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}"
if [[ -z "$plugin" || ! -x "$plugin" ]]; then
    echo "gen-proto: protoc-gen-swift not found; build it (see the top of this script) and set PROTOC_GEN_SWIFT" >&2
    exit 1
fi
command -v protoc >/dev/null || { echo "gen-proto: protoc not found (apt-get install -y protobuf-compiler)" >&2; exit 1; }

out=Sources/DistillWire/Generated
mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$plugin" \
    --proto_path=proto \
    --swift_opt=Visibility=Public \
    --swift_opt=FileNaming=PathToUnderscores \
    --swift_out="$out" \
    proto/distill/v1/records.proto
echo "gen-proto: wrote $(ls "$out"/*.pb.swift | tr '\n' ' ')(protoc $(protoc --version | cut -d' ' -f2))"
