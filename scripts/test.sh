#!/usr/bin/env bash
# Configures, builds and runs every test (the README's test command, also run by CI).
#   scripts/test.sh            release build in build/release
#   scripts/test.sh asan       Debug + AddressSanitizer/UBSan build in build/asan
# Extra arguments after the preset go to ctest, e.g. scripts/test.sh release -R Breakout
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true

jobs="${ENGRAM_JOBS:-$(nproc)}"
echo "== configure ($preset)"
cmake --preset "$preset" >/dev/null
echo "== build ($preset, -j$jobs)"
cmake --build --preset "$preset" -j "$jobs"
echo "== test ($preset)"
ctest --preset "$preset" -j "$jobs" "$@"
