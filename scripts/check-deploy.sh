#!/usr/bin/env bash
# CI's check of README "Deploy" on this machine, for the paths a machine without a Docker engine
# can take: builds the release binary with the Dockerfile's own `cargo build` line, installs it
# the systemd way with deploy/install.sh, verifies the unit, then runs the service exactly as the
# unit does (its user, environment, working directory, ExecStartPre and ExecStart), waits until
# `byfly-server healthcheck` says ready, scrapes /metrics and stops it with SIGTERM.
# Where systemd runs (not on CI machines), it tests the service systemd started instead.
# Needs root (CI runs as root). Leaves the installation in place, as the README's steps would.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

build="$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' deploy/Dockerfile)"
[ -n "$build" ] || { echo "no cargo build line in deploy/Dockerfile" >&2; exit 1; }
echo "+ $build"
$build

BYFLY_BINARY="$CARGO_TARGET_DIR/release/byfly-server" bash deploy/install.sh
unit=/etc/systemd/system/byfly-server.service
systemd-analyze verify "$unit"

# Where systemd runs, install.sh started the service: test it there, sandbox and all.
if [ -d /run/systemd/system ]; then
  for _ in $(seq 1 100); do
    /usr/local/bin/byfly-server healthcheck >/dev/null 2>&1 && break
    sleep 0.2
  done
  systemctl is-active --quiet byfly-server
  /usr/local/bin/byfly-server healthcheck
  curl -fsS http://127.0.0.1:8080/metrics | grep -q '^byfly_terminals{state="free"} '
  systemctl stop byfly-server
  echo "deploy check: installed and started by systemd, ready, /metrics served, stopped"
  exit 0
fi

value() { sed -n "s/^$1=//p" "$unit" | head -n 1; }
user="$(value User)"
workdir="$(value WorkingDirectory)"
# The environment systemd gives a service: a plain PATH, the unit's Environment=, its file's lines.
environment=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$(value Environment)")
if [ -r /etc/byfly/byfly.env ]; then
  while IFS= read -r line; do
    case "$line" in '' | '#'*) ;; *) environment+=("$line") ;; esac
  done </etc/byfly/byfly.env
fi
# Runs a command as the unit would; called in a subshell, which the command replaces (so `$!` of a
# backgrounded one is the server itself, and a signal reaches it).
as_unit() { cd "$workdir" && exec setpriv --reuid="$user" --regid="$user" --init-groups env -i "${environment[@]}" "$@"; }

read -r -a pre <<<"$(value ExecStartPre)"
read -r -a start <<<"$(value ExecStart)"
(as_unit "${pre[@]}")
(as_unit "${start[@]}") &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

ready=""
for _ in $(seq 1 100); do
  if /usr/local/bin/byfly-server healthcheck >/dev/null 2>&1; then
    ready=yes
    break
  fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.2
done
[ -n "$ready" ] || { echo "the installed service never became ready" >&2; exit 1; }
/usr/local/bin/byfly-server healthcheck
metrics="$(curl -fsS http://127.0.0.1:8080/metrics)"
grep -q '^byfly_terminals{state="free"} ' <<<"$metrics" || { echo "no pool figures in /metrics" >&2; exit 1; }
test -f /var/lib/byfly/byfly.db || { echo "the database is not in /var/lib/byfly" >&2; exit 1; }
test "$(stat -c %U /var/lib/byfly/byfly.db)" = "$user" || { echo "the database is not the service user's" >&2; exit 1; }

kill -TERM "$server"
wait "$server"
trap - EXIT
echo "deploy check: installed, ready as user $user, /metrics served, stopped cleanly on SIGTERM"
