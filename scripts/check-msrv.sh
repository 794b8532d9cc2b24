#!/usr/bin/env bash
# Keeps the workspace's `rust-version` true, as far as this machine can check it. It must be
#   - at least every locked dependency's own `rust-version` (sqlx 0.9 asks for 1.94), and
#   - the toolchain CI builds, lints and tests the locked tree with (this machine has exactly one
#     toolchain and can fetch no other, so no older one is claimed untested).
# clippy's incompatible_msrv lint, part of CI's clippy run, checks our own code against it too.
# When the machine's toolchain moves, this fails: test the tree on the new one and move the field.
set -euo pipefail
cd "$(dirname "$0")/.."

declared="$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)"
toolchain="$(rustc --version | awk '{print $2}')"
floor="$(cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
versions = [
    (tuple(int(part) for part in package["rust_version"].split(".")), package["name"])
    for package in meta["packages"]
    if package.get("source") and package.get("rust_version")
]
version, name = max(versions)
print(".".join(map(str, version)), name)
')"
read -r floor_version floor_crate <<<"$floor"

short() { echo "$1" | cut -d. -f1,2; }
older() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ] && [ "$1" != "$2" ]; }

if older "$(short "$declared")" "$(short "$floor_version")"; then
  echo "rust-version $declared is older than $floor_crate's $floor_version: raise it" >&2
  exit 1
fi
if [ "$(short "$declared")" != "$(short "$toolchain")" ]; then
  echo "rust-version $declared, but CI builds with $toolchain: test the tree on it and set rust-version to it" >&2
  exit 1
fi
echo "rust-version $declared: the toolchain CI builds with; the dependencies need $floor_version ($floor_crate)"
