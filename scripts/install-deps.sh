#!/usr/bin/env bash
# Install everything the test suite needs on Debian 12 (bookworm) or Ubuntu, as root, then make
# sure PostgreSQL answers on 127.0.0.1:5432 as user postgres without a password.
#
#   sudo bash scripts/install-deps.sh
#
# Packages (the tests use the real tools; a missing one is a failure, never a skip):
#   skopeo umoci debootstrap    build and push the test images
#   buildah                     builds deploy/Containerfile (vfs storage, chroot isolation)
#   docker-registry             the real OCI registry (CNCF distribution)
#   npm                         the old npm packages of the test image
#   golang-go cargo binutils    real Go and Rust binaries for the catalogers (objcopy)
#   libcommons-lang3-java       a real jar;  ruby-rack  real gemspecs;  rpm  a real rpmdb
#   openssl                     the timestamp authority of the keyless tests (openssl ts)
#   postgresql                  the database every test runs on
#   wrk                         the load generator of bench/gate_load.py (benchmarks only)
# Python 3.11+ with venv, for .venv (python3-venv).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
packages=(python3 python3-venv skopeo umoci buildah docker-registry debootstrap golang-go binutils
          openssl ruby-rack libcommons-lang3-java libjansi-java libguava-java rpm db-util
          postgresql wrk)
command -v cargo >/dev/null 2>&1 || packages+=(cargo)  # a rustup cargo will do
command -v npm >/dev/null 2>&1 || packages+=(npm)      # so will Node.js's own npm
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL: start the cluster if it is not answering.
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "install-deps: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
# The tests connect as postgres@127.0.0.1 without a password (SUPPLYCHAIN_TEST_PG changes it).
# A fresh Debian cluster asks for one over TCP: allow loopback connections (test machines only).
if ! psql -h 127.0.0.1 -U postgres -w -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  echo "install-deps: $hba: trusting host 127.0.0.1/32 (a test machine's database)"
  sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi
echo "install-deps: ready (the tests create their own databases)"
