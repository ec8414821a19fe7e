#!/usr/bin/env bash
# Installs the system packages the test suite drives for real (nginx), when missing.
# Runs as root with apt-get (CI, fresh Debian machines); elsewhere it only says what is missing.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: ${missing[*]} not installed; the end-to-end tests that need it will be skipped" >&2
  echo "      (install it, e.g. 'sudo apt-get install ${missing[*]}')" >&2
fi
