#!/usr/bin/env bash
# Puts victoria-metrics and vmalert (Debian's 1.79 build) under .tools/victoria-metrics unless already reachable.
set -euo pipefail
dest="${1:-.tools/victoria-metrics}"
if [[ -x "$dest/usr/bin/victoria-metrics" && -x "$dest/usr/bin/vmalert" ]]; then
    exit 0
fi
if command -v victoria-metrics >/dev/null && command -v vmalert >/dev/null; then
    mkdir -p "$dest/usr/bin"
    ln -sf "$(command -v victoria-metrics)" "$dest/usr/bin/victoria-metrics"
    ln -sf "$(command -v vmalert)" "$dest/usr/bin/vmalert"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-victoria-metrics: no victoria-metrics on PATH and no apt-get to fetch it; install VictoriaMetrics" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The .deb (23 MB) is static Go binaries: unpacking it is all an install would do that the tests need.
(cd "$work" && { apt-get download victoria-metrics >/dev/null 2>&1 || { apt-get update -qq && apt-get download victoria-metrics; }; })
mkdir -p "$dest"
dpkg-deb -x "$work"/victoria-metrics_*.deb "$dest"
echo "victoria-metrics $(dpkg-deb -f "$work"/victoria-metrics_*.deb Version) in $dest/usr/bin"
