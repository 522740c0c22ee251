#!/usr/bin/env bash
# Installs Triton's perf_analyzer 2.60.0 into the test venv ($1, default .venv) as
# $VENV/bin/perf_analyzer. PyPI ships it only as a manylinux_2_38 wheel (glibc 2.38,
# GLIBCXX_3.4.32) and Debian 12 has glibc 2.36, where pip silently picks a 0.1.0
# placeholder. So: download the 2.60.0 wheel for that platform, unpack the binary, and
# run it under Debian trixie's loader, libc6, libstdc++6 and libgcc-s1 unpacked (not
# installed) into $VENV/pa-runtime. The system libc is untouched.
# (Approach from ../shared/bench/peers/setup.sh.)
set -euo pipefail
VENV=${1:-.venv}
PY=${PY:-python3}
if "$VENV/bin/perf_analyzer" --version >/dev/null 2>&1; then
  exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux_2_38_x86_64 --python-version 3.11 -d "$T" perf-analyzer==2.60.0
(cd "$T" && "$PY" -m zipfile -e perf_analyzer-2.60.0-*.whl w)
mkdir -p "$VENV/pa-bin"
install -m755 "$T/w/perf_analyzer/bin/perf_analyzer" "$VENV/pa-bin/perf_analyzer.real"
A=$T/apt
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/pref.d" "$T/debs"
MIRROR=$(grep -hoE '^URIs: *[^ ]+/debian$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//' || true)
[ -n "$MIRROR" ] || MIRROR=$(grep -hoE '^deb +[^ ]+/debian ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}' || true)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" > "$A/sources.list"
O=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$A/lists"
   -o Dir::Cache="$A/cache" -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$A/pref.d"
   -o Dir::State::status=/dev/null)
apt-get "${O[@]}" update -qq
(cd "$T/debs" && apt-get "${O[@]}" download libc6 libstdc++6 libgcc-s1 >/dev/null)
rm -rf "$VENV/pa-runtime"
mkdir -p "$VENV/pa-runtime"
for d in "$T"/debs/*.deb; do dpkg-deb -x "$d" "$VENV/pa-runtime"; done
cat > "$VENV/bin/perf_analyzer" <<'SH'
#!/bin/sh
# perf_analyzer 2.60.0 under Debian trixie's loader/libc/libstdc++ (scripts/setup-perf-analyzer.sh)
V=$(dirname "$(readlink -f "$0")")/..
L=$V/pa-runtime/usr/lib/x86_64-linux-gnu
exec "$L/ld-linux-x86-64.so.2" --library-path "$L:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "$V/pa-bin/perf_analyzer.real" "$@"
SH
chmod +x "$VENV/bin/perf_analyzer"
"$VENV/bin/perf_analyzer" --version
