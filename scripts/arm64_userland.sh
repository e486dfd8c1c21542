#!/usr/bin/env bash
# An emulated arm64 "Raspberry Pi OS Bookworm" userland for the tests: Debian Bookworm's arm64
# python3.11 (glibc 2.36) unpacked from Debian's own packages, aarch64 wheels for the device side,
# and wrapper scripts that run it under qemu-user-static. Built once, cached, then only printed.
#
#   bash scripts/arm64_userland.sh      build when missing or outdated, then print KEY=VALUE lines:
#     PYTHON          a bare device's python3 (stdlib + venv/ensurepip, no numpy, no interpreter)
#     PYTHON_LITERT   python3 with numpy<2 + OpenCV headless + ai-edge-litert (what works under qemu)
#     PYTHON_TFLITE   python3 with numpy<2 + OpenCV headless + tflite-runtime 2.14
#     ROOT WHEELS QEMU BUILD_S
#   EDGEKIT_ARM64_CACHE=DIR             cache folder (default ~/.cache/edgekit-tests/arm64)
#
# binfmt_misc is not mounted on CI machines, so nothing here relies on it: each wrapper calls
# `qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11` itself, and passes its own path as argv[0]
# (`-0`) so that a virtual environment made from it (`python3 -m venv`) works like on a Pi.
# The apt part uses a private apt configuration (its own sources, lists and dpkg status under the
# cache) instead of `dpkg --add-architecture arm64`: the host's apt setup is left untouched and no
# root is needed for this script (only for installing qemu-user-static, see scripts/setup.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EDGEKIT_ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgekit-tests/arm64}

# What works under qemu 7.2 (see README, "Emulated aarch64"): newer ai-edge-litert releases crash
# (2.2.0, 2.3.0) or compute wrong results (2.1.6 unless QEMU_CPU=cortex-a72) under emulation.
LITERT=ai-edge-litert==2.1.0
TFLITE=tflite-runtime==2.14.0
COMMON=(numpy==1.26.4 opencv-python-headless==4.11.0.86) # tflite-runtime needs numpy<2
# (not installed anywhere, only offered to the emulated device's pip: `devices setup` installs Pillow)
DEVICE_EXTRA=(pillow==11.3.0)
# coreutils and libc-bin give the device its own `uname` and `getconf` (see device-bin below)
DEBS=(python3.11 python3.11-venv libstdc++6 libgcc-s1 libgomp1 coreutils libc-bin)
MIRROR=http://deb.debian.org/debian
SECURITY=http://deb.debian.org/debian-security
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() {
  echo "arm64_userland: $*" >&2
  exit 3
}

QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
[ -n "$QEMU" ] || die "qemu-aarch64-static not found; install it: apt-get install qemu-user-static (or run EDGEKIT_SYSTEM_DEPS=1 bash scripts/setup.sh as root)"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "apt-get and dpkg-deb are needed (a Debian or Ubuntu host)"
[ -r "$KEYRING" ] || die "$KEYRING is missing; install debian-archive-keyring"
HOST_PY=${PYTHON:-}
if [ -z "$HOST_PY" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then HOST_PY="$REPO/.venv/bin/python"; else HOST_PY=python3; fi
fi

KEY="v4|${DEBS[*]}|${COMMON[*]}|${DEVICE_EXTRA[*]}|$LITERT|$TFLITE|$QEMU|$CACHE"
ROOT=$CACHE/root
SITE=$CACHE/site

print_paths() {
  echo "ROOT=$ROOT"
  echo "PYTHON=$ROOT/usr/bin/python3"
  echo "PYTHON_LITERT=$CACHE/bin/python3-litert"
  echo "PYTHON_TFLITE=$CACHE/bin/python3-tflite"
  echo "HOST_TFLITE_SITE=$CACHE/host-tflite"
  echo "DEVICE_BIN=$CACHE/device-bin"
  echo "WHEELS=$CACHE/wheels"
  echo "QEMU=$QEMU"
  echo "BUILD_S=${1:-0}"
}

# One build at a time (parallel test workers, two terminals): the others wait, then reuse it.
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9

if [ -f "$CACHE/READY" ] && [ "$(cat "$CACHE/READY")" = "$KEY" ]; then
  print_paths 0
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # a second build (another test process) waits for the first, then finds it done
if [ -f "$CACHE/READY" ] && [ "$(cat "$CACHE/READY")" = "$KEY" ]; then
  print_paths 0
  exit 0
fi
START=$(date +%s)
rm -f "$CACHE/READY"

# --- 1. Debian arm64 packages: python3.11 and everything it depends on, via a private apt config
APT=$CACHE/apt
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/etc"
: >"$APT/status" # an empty dpkg status: apt resolves the full dependency closure
cat >"$APT/etc/sources.list" <<EOF
deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm main
deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [arch=arm64 signed-by=$KEYRING] $SECURITY bookworm-security main
EOF
APT_OPTS=(
  -o APT::Architecture=arm64 -o APT::Architectures::=arm64
  -o Dir::Etc::SourceList="$APT/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
  -o Dir::State="$APT" -o Dir::State::Lists="$APT/lists" -o Dir::State::status="$APT/status"
  -o Dir::Cache="$APT" -o Dir::Cache::Archives="$APT/archives" -o Dir::Log="$APT"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q
)
echo "arm64_userland: downloading Debian Bookworm arm64 packages (${DEBS[*]} and dependencies)" >&2
apt-get "${APT_OPTS[@]}" update >/dev/null || die "apt-get update of the arm64 package lists failed"
apt-get "${APT_OPTS[@]}" install -y --download-only --no-install-recommends "${DEBS[@]}" >/dev/null ||
  die "downloading the arm64 packages failed"

NEW=$CACHE/root.new
rm -rf "$NEW"
mkdir -p "$NEW"
for deb in "$APT"/archives/*_arm64.deb "$APT"/archives/*_all.deb; do
  [ -e "$deb" ] && dpkg-deb -x "$deb" "$NEW"
done
[ -x "$NEW/usr/bin/python3.11" ] || die "python3.11 is missing from the unpacked packages"

# The device's python3: a wrapper that runs the arm64 python3.11 under qemu. It sits where Debian's
# python3 link was, so Python finds its standard library from the wrapper's own path.
rm -f "$NEW/usr/bin/python3"
cat >"$NEW/usr/bin/python3" <<EOF
#!/bin/sh
# python3 of an emulated arm64 Debian Bookworm (made by edgekit scripts/arm64_userland.sh).
# EDGEKIT_EMULATED tells the device scripts that their timings are not a device's speed.
EDGEKIT_EMULATED=qemu-aarch64
export EDGEKIT_EMULATED
# The host's pip settings (its config files and PIP_* variables) are not the device's: pip on the
# emulated device reads no config file and installs the cached aarch64 wheels (the same files PyPI
# serves), offline, pinned, and quick compared with resolving against PyPI under emulation.
unset \$(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p') 2>/dev/null || true
PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_FIND_LINKS="$CACHE/wheels" PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_CONFIG_FILE PIP_NO_INDEX PIP_FIND_LINKS PIP_DISABLE_PIP_VERSION_CHECK
exec "$QEMU" -L "$ROOT" -0 "\$0" "$ROOT/usr/bin/python3.11" "\$@"
EOF
chmod +x "$NEW/usr/bin/python3"

# Debian compiles its .pyc files in postinst scripts, which dpkg-deb -x does not run: compile the
# standard library now (a host Python 3.11 writes the same bytecode, much faster than emulation).
if "$HOST_PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  "$HOST_PY" -m compileall -q "$NEW/usr/lib/python3.11" >/dev/null 2>&1 || true
fi

# --- 2. aarch64 wheels, downloaded by the host's pip for the device's platform
PLAT=(--python-version 3.11 --implementation cp --abi cp311 --only-binary=:all:)
for v in $(seq 17 36); do PLAT+=(--platform "manylinux_2_${v}_aarch64"); done # glibc 2.36 takes <= 2_36
PLAT+=(--platform manylinux2014_aarch64)
PIP=(env -u PIP_FIND_LINKS -u PIP_NO_INDEX "$HOST_PY" -m pip)
echo "arm64_userland: downloading aarch64 wheels (${COMMON[*]} $LITERT $TFLITE)" >&2
mkdir -p "$CACHE/wheels"
LOG=$CACHE/pip.log # pip's chatter (the host's index warnings, resolver notes) goes here
"${PIP[@]}" download -q "${PLAT[@]}" -d "$CACHE/wheels" "${COMMON[@]}" "${DEVICE_EXTRA[@]}" "$LITERT" "$TFLITE" >"$LOG" 2>&1 ||
  die "downloading the aarch64 wheels failed; see $LOG"

SNEW=$CACHE/site.new
rm -rf "$SNEW"
INSTALL=("${PIP[@]}" install -q --no-warn-script-location --no-index --find-links "$CACHE/wheels" "${PLAT[@]}")
# --no-deps with each group's packages named: numpy comes from common/ only
{
  "${INSTALL[@]}" --target "$SNEW/common" --no-deps "${COMMON[@]}" &&
    "${INSTALL[@]}" --target "$SNEW/litert" --no-deps "$LITERT" backports.strenum flatbuffers protobuf tqdm typing_extensions &&
    "${INSTALL[@]}" --target "$SNEW/tflite" --no-deps "$TFLITE" &&
    rm -rf "$CACHE/host-tflite" &&
    "${PIP[@]}" install -q --no-warn-script-location --only-binary=:all: --target "$CACHE/host-tflite" \
      --no-deps "$TFLITE" "${COMMON[0]}"
} >>"$LOG" 2>&1 || die "installing the aarch64 wheels failed; see $LOG"

mkdir -p "$CACHE/bin"
for rt in litert tflite; do
  cat >"$CACHE/bin/python3-$rt" <<EOF
#!/bin/sh
# The emulated device's python3 with numpy, OpenCV and one interpreter ($rt) on its path.
PYTHONPATH="$SITE/common:$SITE/$rt"
export PYTHONPATH
exec "$ROOT/usr/bin/python3" "\$@"
EOF
  chmod +x "$CACHE/bin/python3-$rt"
done

# The emulated device's own commands for a shell session (sshd's SetEnv PATH=DEVICE_BIN:...):
# without binfmt_misc only what is named here runs as aarch64, everything else stays the host's.
rm -rf "$CACHE/device-bin"
mkdir -p "$CACHE/device-bin"
ln -s "$ROOT/usr/bin/python3" "$CACHE/device-bin/python3"
ln -s "$ROOT/usr/bin/python3" "$CACHE/device-bin/python3.11"
for cmd in bin/uname usr/bin/getconf; do
  [ -x "$NEW/$cmd" ] || die "$cmd is missing from the unpacked packages"
  printf '#!/bin/sh\nexec "%s" -L "%s" "%s" "$@"\n' "$QEMU" "$ROOT" "$ROOT/$cmd" >"$CACHE/device-bin/${cmd##*/}"
  chmod +x "$CACHE/device-bin/${cmd##*/}"
done

# --- 3. swap in the new tree, then a smoke test
rm -rf "$ROOT" "$SITE"
mv "$NEW" "$ROOT"
mv "$SNEW" "$SITE"
OUT=$("$CACHE/bin/python3-litert" -c 'import platform, numpy, cv2, ai_edge_litert.interpreter as i
print(platform.machine(), platform.python_version(), " ".join(platform.libc_ver()), numpy.__version__)') ||
  die "the emulated python3 does not start"
echo "arm64_userland: emulated $OUT" >&2
echo "$KEY" >"$CACHE/READY"
print_paths $(($(date +%s) - START))
