#!/usr/bin/env bash
# Generates the Python stubs into gen/ (not committed) from the repository's
# proto/ with buf and local plugins only: Debian's protoc (protobuf-compiler,
# 3.21: it accepts proto3 `optional`) and grpc_python_plugin
# (protobuf-compiler-grpc). Needs `npm ci` at the repository root first (buf and
# the google.rpc protos come from npm packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
npx buf generate --template examples/python-orchestrator/buf.gen.yaml
echo "generated examples/python-orchestrator/gen"
