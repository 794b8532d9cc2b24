#!/usr/bin/env bash
# The whole test suite, from a fresh machine: sets it up (scripts/setup-test-machine.sh, skipped
# with BYFLY_TEST_SETUP=0), then every crate's tests with the server's suite on SQLite, then that
# suite on PostgreSQL, then schemathesis against the demo (scripts/schemathesis.sh); the
# per-binary summaries are added up into one closing line.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BYFLY_TEST_SETUP:-1}" != 0 ]; then
  bash scripts/setup-test-machine.sh
fi
export BYFLY_TEST_DATABASE_URL="${BYFLY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-features --locked 2>&1 | tee "$log"
BYFLY_TEST_BACKEND=postgres cargo test --workspace --all-features --locked --test server 2>&1 | tee -a "$log"
bash scripts/schemathesis.sh 2>&1 | tee -a "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all test binaries: %d passed, %d failed; schemathesis: 0 failures\n", p, f }' "$log"
