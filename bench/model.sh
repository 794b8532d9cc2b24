#!/usr/bin/env bash
# The model-based lifecycle test (byfly-server/tests/server/model.rs) at length: many seeded random
# sequences of merchant, customer and terminal actions against the real server and realistic
# simulated terminals. Prints "model: N sequences, M steps, V invariant violations" and, for each
# violation, the seed, the step and the actions that led there (replay one with BYFLY_MODEL_SEED).
#   bash bench/model.sh [sequences] [steps]        (default 200 × 20; about 30 s a sequence here)
set -euo pipefail
cd "$(dirname "$0")/.."
export BYFLY_MODEL_SEQUENCES="${1:-200}" BYFLY_MODEL_STEPS="${2:-20}"
export BYFLY_MODEL_SEED="${BYFLY_MODEL_SEED:-$(date +%s)}"
echo "seeds from $BYFLY_MODEL_SEED"
cargo test -p byfly-server --test server model:: -- --nocapture 2>&1 | grep -E "^model:|^seed |after:|panicked" || true
