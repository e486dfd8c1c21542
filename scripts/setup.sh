#!/usr/bin/env bash
# Set up everything edgekit and its tests need on a fresh Debian/Ubuntu machine (idempotent).
#   bash scripts/setup.sh            python venv in .venv with the desktop + dev extras
#   EDGEKIT_SYSTEM_DEPS=1 ...        also apt-get the system packages the tests use (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${EDGEKIT_SYSTEM_DEPS:-0}" = "1" ]; then
  need=()
  command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
  # emulated aarch64 device for tests/arm (the userland itself: scripts/arm64_userland.sh)
  command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
  # headless browser that renders `edgekit report` in tests/store
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      echo "setup: missing system packages: ${need[*]} (run as root or install them)" >&2
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[tf,dev,onnx,quantizer]"
# torch==2.13.0 resolves to the local CPU wheel here; where it cannot install, the ONNX tests that
# export PyTorch models skip and say why (any other torch version would download GBs of CUDA).
.venv/bin/python -m pip install -q -e ".[onnx-test]" || echo "setup: torch==2.13.0 not installable; PyTorch-based ONNX tests will skip" >&2
# jax[cpu] for the Keras-backend tests (`edgekit eval --backend jax`); they skip, saying so, without it.
.venv/bin/python -m pip install -q -e ".[backends-test]" || echo "setup: jax[cpu]==0.10.2 not installable; the jax backend tests will skip" >&2
echo "setup: done ($(.venv/bin/python --version), edgekit $(.venv/bin/edgekit --version | awk '{print $NF}'))"
