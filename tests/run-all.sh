#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs the real peers the tests talk to
# (Python packages from PyPI), then checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test peers (PyPI: tests/python/requirements.txt)"
python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "== installing p4runtime-shell into target/p4rt-shell-venv (tests/python/p4rt-shell-requirements.txt)"
python3 -m venv target/p4rt-shell-venv
target/p4rt-shell-venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r tests/python/p4rt-shell-requirements.txt

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

echo "== cargo test --all-targets"
cargo test --all-targets
