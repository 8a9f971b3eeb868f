#!/usr/bin/env bash
# Installs the Prometheus tools the tests read metrics with (README,
# "Development"): promtool, unpacked from Debian's prometheus package into
# .tools/prometheus/ (no server is installed or started), and the Prometheus
# Python client's parser (Debian's python3-prometheus-client). Needs root for
# the apt-get install, and Debian's package lists (apt-get update). Prints
# promtool's path.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=.tools/prometheus
if [ ! -x "$dir/usr/bin/promtool" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download prometheus >/dev/null)
  mkdir -p "$dir"
  dpkg -x "$tmp"/prometheus_*.deb "$dir"
  rm -rf "$tmp"
fi
if ! /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null; then
  apt-get install -y --no-install-recommends python3-prometheus-client >/dev/null
fi
echo "$PWD/$dir/usr/bin/promtool"
