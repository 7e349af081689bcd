#!/usr/bin/env bash
# Puts prometheus and promtool (Debian's 2.42 build) under .tools/prometheus unless they are already reachable.
set -euo pipefail
dest="${1:-.tools/prometheus}"
if [[ -x "$dest/usr/bin/prometheus" && -x "$dest/usr/bin/promtool" ]]; then
    exit 0
fi
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    mkdir -p "$dest/usr/bin"
    ln -sf "$(command -v prometheus)" "$dest/usr/bin/prometheus"
    ln -sf "$(command -v promtool)" "$dest/usr/bin/promtool"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-prometheus: no prometheus on PATH and no apt-get to fetch it; install Prometheus 2.x" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Downloading the .deb (19 MB) and unpacking it avoids the 330 MB dependency tree of a full install.
(cd "$work" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; })
mkdir -p "$dest"
dpkg-deb -x "$work"/prometheus_*.deb "$dest"
"$dest/usr/bin/prometheus" --version | head -1
