#!/usr/bin/env bash
# Compares our QR decoder (image + rqrr, in release) with Debian's zbarimg on the same corpus of
# simulated camera frames, and prints success rate and median time per frame for each.
# zbarimg is timed per process, so its figures include process start-up (a few ms).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v zbarimg >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zbar-tools >/dev/null
}

corpus="${1:-$(mktemp -d)}"
cargo run -q --release -p byfly-terminal --features simulator --example qr_corpus -- "$corpus"

# zbar_run LABEL SUFFIX ARGS...: decode every frame, count exact matches, collect times.
zbar_run() {
  local label="$1" suffix="$2"; shift 2
  local ok=0 total=0 times=()
  while read -r name text; do
    local start end found
    start=$(date +%s%N)
    found=$(zbarimg -q --raw "$@" "$corpus/${name}${suffix}" 2>/dev/null | head -n 1 || true)
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000 )))
    total=$((total + 1))
    [ "$found" = "$text" ] && ok=$((ok + 1))
  done < "$corpus/expected.txt"
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  awk -v l="$label" -v ok="$ok" -v t="$total" -v m="$median" \
    'BEGIN { printf "%s: %d/%d = %.1f %%, median %.1f ms per frame\n", l, ok, t, 100*ok/t, m/1000 }'
}

zbar_run "zbarimg default (JPEG as sent)" ".jpg"
zbar_run "zbarimg -Sdisable -Sqrcode.enable (blurred σ=1 copy)" "_blur.png" -Sdisable -Sqrcode.enable
echo "corpus: $corpus"
