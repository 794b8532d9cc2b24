#!/usr/bin/env bash
# Webhook fairness: deliveries per second to a healthy receiver while another receiver never
# answers (its host's slots stay taken), against the real server in release mode with SQLite.
#   bash bench/webhooks.sh [events]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
export BYFLY_BENCH_EVENTS="${1:-300}"
cargo test --release -p byfly-server --test server outbox::fairness_figure -- --ignored --nocapture 2>&1 \
  | grep -E "^webhook fairness:|panicked|error" || true
