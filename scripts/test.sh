#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, then pytest (all markers).
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEKIT_SYSTEM_DEPS=${EDGEKIT_SYSTEM_DEPS:-1} bash scripts/setup.sh
.venv/bin/ruff check edgekit converters device_scripts tests benchmarks
# Two workers by default (pytest-xdist; a file's tests stay together so its fixtures are built once):
# most tests wait on subprocesses, sshd or qemu, so two cores run the suite in about 0.6 of the time.
# EDGEKIT_TEST_WORKERS=0 runs it in one process.
exec .venv/bin/python -m pytest -n "${EDGEKIT_TEST_WORKERS:-2}" --dist loadfile "$@"
