#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, then pytest (all markers).
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEKIT_SYSTEM_DEPS=${EDGEKIT_SYSTEM_DEPS:-1} bash scripts/setup.sh
.venv/bin/ruff check edgekit converters device_scripts tests benchmarks
exec .venv/bin/python -m pytest "$@"
