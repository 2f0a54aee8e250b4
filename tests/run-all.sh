#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs the real peers the tests talk to
# (Python packages from PyPI), then checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages of the real peers: tshark decodes our sFlow (tests/sflow_tshark.rs, tests/host.rs);
# iproute2 makes the network namespaces of the AF_PACKET and lab tests (tests/switch_af_packet.rs,
# tests/netns_lab.rs); graphviz's dot renders our DOT (controller::graph); Open vSwitch and
# ethtool are the servers' virtual switches in the network-namespace lab (tests/netns_lab.rs);
# Node.js and npm build the web page (build.rs, web/) and Chromium shows it (tests/web_page.rs).
missing=()
command -v tshark >/dev/null || missing+=(tshark)
command -v ip >/dev/null || missing+=(iproute2)
command -v dot >/dev/null || missing+=(graphviz)
command -v ovs-vswitchd >/dev/null || missing+=(openvswitch-switch)
command -v ethtool >/dev/null || missing+=(ethtool)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)
if ((${#missing[@]})); then
    echo "== installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== installing test peers into target/py-venv (PyPI: tests/python/requirements.txt)"
python3 -m venv target/py-venv
target/py-venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r tests/python/requirements.txt

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

echo "== cargo doc (broken or private intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

echo "== cargo test --all-targets"
cargo test --all-targets
