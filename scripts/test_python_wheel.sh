#!/usr/bin/env bash
# The documented Python install path (wheel -> venv with Debian's site packages),
# packaging the module of the build that the tests just used.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec sh "$ROOT/python/build_wheel_and_smoke_test.sh" "${BUILD_DIR:-$ROOT/build}"
