#!/usr/bin/env bash
# Installs the system packages the test suite drives for real (nginx, caddy, pgbouncer; systemd for
# `systemd-analyze verify` of deploy/systemd; for the browser tests Debian's chromium and
# libzbar0), when missing, and the browser tests' npm package
# (axe-core, tests/browser/package-lock.json) with `npm ci` when npm is there.
# Runs as root with apt-get (CI, fresh Debian machines); elsewhere it only says what is missing.
# The tests start their own nginx and caddy on free ports: the packages' services are not
# started here (a policy-rc.d says no while installing), and a caddy one that runs anyway is
# stopped. A package that cannot be installed is a note, or an error when CI=true.
set -euo pipefail
ci="${CI:-}"
root="$(cd "$(dirname "$0")/.." && pwd)"

# PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) for the storage and
# multi-instance tests. On this project's machines it runs already; a stopped cluster is
# started. It is never installed here: a new PostgreSQL would not have trust auth.
postgres_up() { python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 2).close()' 2>/dev/null; }
if ! postgres_up && command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
fi
if ! postgres_up; then
  echo "note: no PostgreSQL at 127.0.0.1:5432; its tests will be skipped (they fail when CI=true)" >&2
fi

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
have_caddy() { command -v caddy >/dev/null 2>&1 || [ -x /usr/bin/caddy ]; }
# Only systemd-analyze is used (verify of deploy/systemd/totp-sidecar.service); nothing starts it.
have_systemd_analyze() { command -v systemd-analyze >/dev/null 2>&1 || [ -x /usr/bin/systemd-analyze ]; }
# The browser tests drive /usr/bin/chromium (or $CHROMIUM), never a downloaded browser;
# pyzbar finds libzbar the way this asks for it (ctypes.util.find_library).
have_chromium() { [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; }
# PgBouncer in transaction mode: the multi-instance tests start their own on a free port
# (the package's service is not started here).
have_pgbouncer() { command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; }
have_zbar() { python3 -c 'import ctypes.util, sys; sys.exit(not ctypes.util.find_library("zbar"))' 2>/dev/null; }

# axe-core for the accessibility tests, pinned in tests/browser/package-lock.json. Needs only
# npm and the npm registry; runs whether or not system packages were missing.
npm_deps() {
  local dir="$root/tests/browser"
  [ -d "$dir/node_modules/axe-core" ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "note: npm not found; the accessibility tests (axe-core) will be skipped" >&2
    echo "      (install Node.js + npm, then: npm ci --prefix tests/browser)" >&2
    return 1
  fi
  echo "installing: axe-core (npm ci --prefix tests/browser)"
  if ! npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null; then
    echo "note: npm ci in tests/browser failed; the accessibility tests will be skipped" >&2
    return 1
  fi
}

status=0
if ! npm_deps && [ "${ci,,}" = true ]; then status=1; fi

missing=()
have_nginx || missing+=(nginx)
have_caddy || missing+=(caddy)
have_systemd_analyze || missing+=(systemd)
have_chromium || missing+=(chromium)
have_zbar || missing+=(libzbar0)
have_pgbouncer || missing+=(pgbouncer)
[ ${#missing[@]} -eq 0 ] && exit "$status"

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${missing[*]} not installed; the end-to-end tests that need it will be skipped" >&2
  echo "      (install it, e.g. 'sudo apt-get install ${missing[*]}')" >&2
  [ "${ci,,}" = true ] && exit 1
  exit "$status"
fi

export DEBIAN_FRONTEND=noninteractive
# No service starts during the installs (Debian's invoke-rc.d and deb-systemd-invoke ask
# policy-rc.d; 101 = "not allowed"). An existing policy-rc.d is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

apt_install() {  # apt_install PACKAGE...: the first one that apt-get can install
  local package
  for package in "$@"; do
    echo "installing: $package"
    if apt-get install -y -qq --no-install-recommends "$package" >/dev/null; then
      return 0
    fi
    echo "note: apt-get could not install $package" >&2
  done
  return 1
}

apt-get update -qq
failed=()
if ! have_nginx; then
  apt_install nginx-light nginx || failed+=(nginx)  # nginx-light is gone from newer releases
fi
if ! have_caddy; then
  apt_install caddy || failed+=(caddy)
fi
if ! have_systemd_analyze; then
  apt_install systemd || failed+=(systemd)
fi
if ! have_chromium; then
  apt_install chromium || failed+=(chromium)  # Debian's own build; the tests never download one
fi
if ! have_zbar; then
  apt_install libzbar0 || failed+=(libzbar0)  # read back by pyzbar: QR codes from screenshots
fi
if ! have_pgbouncer; then
  apt_install pgbouncer || failed+=(pgbouncer)
fi

# The caddy package enables caddy.service (:80, admin API on localhost:2019). Where a
# service manager started it anyway, stop it: the tests need neither, and a stray caddy
# would hold port 2019 for anyone who runs caddy with the admin API on.
if have_caddy && pgrep -x caddy >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet caddy 2>/dev/null; then
    echo "stopping the caddy service (the tests run their own caddy)"
    systemctl stop caddy || true
    systemctl disable --quiet caddy 2>/dev/null || true
  else
    echo "note: a caddy process is running (not started by this script); the tests do not need it" >&2
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "note: ${failed[*]} not installed; the end-to-end tests that need it will be skipped" >&2
  [ "${ci,,}" = true ] && exit 1
fi
exit "$status"
