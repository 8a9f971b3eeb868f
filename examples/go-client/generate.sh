#!/usr/bin/env bash
# Generates the Go code into gen/ (not committed) from the repository's proto/
# with buf and local plugins only: protoc-gen-go and protoc-gen-go-grpc (Debian:
# apt-get install protoc-gen-go protoc-gen-go-grpc). Needs `npm ci` at the
# repository root first (buf comes from npm).
set -euo pipefail
cd "$(dirname "$0")/../.."
npx buf generate --template examples/go-client/buf.gen.yaml
echo "generated examples/go-client/gen"
