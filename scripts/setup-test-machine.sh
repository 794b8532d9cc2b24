#!/usr/bin/env bash
# Makes a fresh Debian machine able to run the whole test suite, and does nothing where that is
# already done: PHP and Node (the guide's webhook receivers), Chromium and playwright-core (the
# payment page's browser tests), the official Standard Webhooks libraries (PyPI and npm), and
# PostgreSQL on 127.0.0.1:5432 with a database `test` that `postgres` reaches without a password
# (the server's suite on its second backend). Installing needs root; `scripts/test.sh` and
# `.ci/run` call it.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The deploy check (scripts/check-deploy.sh, run by .ci/run): curl for /metrics, systemd's tools
# to verify the unit (no systemd needs to run), setpriv (util-linux) to run as the unit's user.
have curl || apt_install curl
have systemd-analyze || apt_install systemd
have setpriv || apt_install util-linux
# Real runtimes for the webhook conformance tests: the guide's receivers are PHP and Node.
have php || apt_install php-cli
have node || apt_install nodejs
# The payment page's browser tests: Debian's Chromium, driven by playwright-core from npm.
have chromium || apt_install chromium
have npm || apt_install npm
npm ci --prefix tests/browser --no-audit --no-fund
# A TypeScript client generated from the OpenAPI document (openapi-typescript, openapi-fetch, tsc).
npm ci --prefix tests/generated-client --no-audit --no-fund
# The official Standard Webhooks libraries, which must verify our deliveries unmodified: Python's
# from PyPI (CPython with pip; Debian's python3-pip where the machine has none), JavaScript's from npm.
have python3 || apt_install python3
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
python3 -m pip install --quiet --disable-pip-version-check standardwebhooks==1.1.0 \
  || python3 -m pip install --quiet --break-system-packages standardwebhooks==1.1.0
# schemathesis, which tries the API from its OpenAPI document (scripts/schemathesis.sh).
python3 -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5 \
  || python3 -m pip install --quiet --break-system-packages schemathesis==4.32.5
npm ci --prefix byfly-server/tests/receivers --no-audit --no-fund
python3 -c 'import standardwebhooks; print("standardwebhooks (PyPI)", "ok")'
python3 -m schemathesis.cli --version
# PostgreSQL for the server's suite on its second backend (trust on 127.0.0.1, database `test`), started if
# it is not running; the tests fail, not skip, when it cannot be reached.
if ! { have pg_isready && pg_isready -q -h 127.0.0.1 -p 5432; }; then
  have pg_ctlcluster || apt_install postgresql
  pg_version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  pg_hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
  grep -q 'byfly-ci' "$pg_hba" || sed -i '1i host all postgres 127.0.0.1/32 trust # byfly-ci' "$pg_hba"
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start || pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"
export BYFLY_TEST_DATABASE_URL="${BYFLY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
psql "$BYFLY_TEST_DATABASE_URL" -Atc "SELECT version()"
php --version | head -n 1
node --version
chromium --version

