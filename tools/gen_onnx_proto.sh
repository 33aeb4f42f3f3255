#!/usr/bin/env bash
# Regenerates Sources/ONNXProto/onnx.pb.swift from the onnx.proto that Debian's libonnx-dev installs.
# Needs protoc (Debian protobuf-compiler) and protoc-gen-swift, built here from the swift-protobuf
# checkout that SwiftPM already resolved for this package (so the generator matches the runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
proto=${ONNX_PROTO:-/usr/include/onnx/onnx.proto}
[ -f "$proto" ] || { echo "missing $proto: apt-get install libonnx-dev" >&2; exit 1; }
command -v protoc >/dev/null || { echo "missing protoc: apt-get install protobuf-compiler" >&2; exit 1; }
swift package resolve >/dev/null
checkout=.build/checkouts/swift-protobuf
swift build -c release --package-path "$checkout" --scratch-path .build-protoc --product protoc-gen-swift
plugin=$(swift build -c release --package-path "$checkout" --scratch-path .build-protoc --show-bin-path)/protoc-gen-swift
tmp=$(mktemp -d)
cp "$proto" "$tmp/onnx.proto"
protoc --plugin=protoc-gen-swift="$plugin" --proto_path="$tmp" \
  --swift_opt=Visibility=Public --swift_out=Sources/ONNXProto "$tmp/onnx.proto"
rm -rf "$tmp"
echo "regenerated Sources/ONNXProto/onnx.pb.swift"
