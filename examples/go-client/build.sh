#!/usr/bin/env bash
# Builds ./go-client offline, from Debian's Go packages: vendor/ links the
# module sources they install under /usr/share/gocode, and `go build
# -mod=vendor` uses nothing else (no module download). With a module proxy
# instead: `go mod tidy && go build -o go-client .`.
#   apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev \
#     golang-google-genproto-dev golang-github-golang-protobuf-1-5-dev
set -euo pipefail
cd "$(dirname "$0")"
# Go needs a cache directory; a CI shell may have no HOME.
[ -n "${HOME:-}" ] || export GOCACHE="${GOCACHE:-/tmp/go-build-cache}"
gocode=/usr/share/gocode/src
rm -rf vendor
mkdir -p vendor
# The modules go.mod requires (their versions are Debian 12's), then those
# they import; `## explicit` marks the ones go.mod names.
{
  printf '# google.golang.org/genproto v0.0.0-20200413115906-b5235f6e0aee\n## explicit; go 1.11\n'
  printf '# google.golang.org/grpc v1.33.3\n## explicit; go 1.11\n'
  printf '# google.golang.org/protobuf v1.28.1\n## explicit; go 1.11\n'
  printf '# github.com/golang/protobuf v1.5.2\n# golang.org/x/net v0.0.0\n# golang.org/x/sys v0.0.0\n# golang.org/x/text v0.0.0\n'
} > vendor/modules.txt
for module in google.golang.org/genproto google.golang.org/grpc google.golang.org/protobuf \
  github.com/golang/protobuf golang.org/x/net golang.org/x/sys golang.org/x/text; do
  if [ ! -d "$gocode/$module" ]; then
    echo "$gocode/$module is missing: install Debian's Go packages (see the top of this file)" >&2
    exit 1
  fi
  mkdir -p "vendor/$(dirname "$module")"
  ln -s "$gocode/$module" "vendor/$module"
done
GOFLAGS=-mod=vendor GOPROXY=off go build -o go-client .
echo "built examples/go-client/go-client"
