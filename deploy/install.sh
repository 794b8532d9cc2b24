#!/usr/bin/env bash
# Installs byfly-server as a systemd service on this machine (Debian or Ubuntu, as root), the way
# README "Deploy" describes: the binary in /usr/local/bin, a system user `byfly`, the settings in
# /etc/byfly (a generated admin token in byfly.env), the SQLite database in /var/lib/byfly, the
# unit enabled and started when systemd runs. Running it again upgrades the binary and the unit
# and keeps settings, secrets and data.
#   bash deploy/install.sh          (builds the release binary from this checkout first)
set -euo pipefail
cd "$(dirname "$0")/.."

# Secrets and settings written here are never readable by others, not even for a moment.
umask 077
# Built from this checkout every time (nothing to do when it is up to date), so that running the
# script after a `git pull` installs the new code; BYFLY_BINARY installs a binary built elsewhere.
if [ -n "${BYFLY_BINARY:-}" ]; then
  binary="$BYFLY_BINARY"
else
  cargo build --release --locked -p byfly-server
  binary="${CARGO_TARGET_DIR:-target}/release/byfly-server"
fi
install -m 0755 "$binary" /usr/local/bin/byfly-server
id -u byfly >/dev/null 2>&1 ||
  useradd --system --user-group --home-dir /var/lib/byfly --shell /usr/sbin/nologin byfly
install -d -o byfly -g byfly -m 0750 /var/lib/byfly
install -d -m 0755 /etc/byfly
if [ ! -e /etc/byfly/byfly.toml ]; then
  sed -e 's|^database_url = .*|database_url = "sqlite:///var/lib/byfly/byfly.db"|' \
    deploy/byfly.example.toml >/etc/byfly/byfly.toml
  chown root:byfly /etc/byfly/byfly.toml
  chmod 0640 /etc/byfly/byfly.toml
fi
if [ ! -e /etc/byfly/byfly.env ]; then
  token="$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)"
  printf 'BYFLY_ADMIN_TOKEN=%s\n' "$token" >/etc/byfly/byfly.env
  chown root:byfly /etc/byfly/byfly.env
  chmod 0640 /etc/byfly/byfly.env
  echo "admin token written to /etc/byfly/byfly.env"
fi
install -m 0644 deploy/byfly-server.service /etc/systemd/system/byfly-server.service
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable byfly-server
  systemctl restart byfly-server
  echo "byfly-server is running: systemctl status byfly-server; journalctl -u byfly-server"
else
  echo "installed; systemd is not running on this machine, so nothing was started"
fi
