#!/usr/bin/env bash
# Runs `vmdep demo --netns` with the reference P4 software switch, bmv2's simple_switch_grpc, as
# the five fabric switches, on vmdep.p4 compiled by p4c (or by `vmdep compile`). See
# bmv2/README.md. Extra arguments go to `vmdep demo` (e.g. --duration 30s --seed 3).
#
# Settings (environment):
#   VMDEP              the vmdep binary              (default: vmdep on PATH, else target/release/vmdep)
#   VMDEP_SWITCH_CMD   the switch command            (default: simple_switch_grpc)
#   VMDEP_P4_COMPILER  p4c or vmdep                  (default: p4c)
#   OUT                output directory              (default: bmv2-demo)
set -euo pipefail
cd "$(dirname "$0")/.."

refuse() {
    echo "bmv2/run-demo.sh: $*" >&2
    exit 2
}

switch_cmd=${VMDEP_SWITCH_CMD:-simple_switch_grpc}
compiler=${VMDEP_P4_COMPILER:-p4c}
out=${OUT:-bmv2-demo}
if [[ -n ${VMDEP:-} ]]; then
    vmdep=$VMDEP
elif command -v vmdep >/dev/null; then
    vmdep=$(command -v vmdep)
else
    vmdep=target/release/vmdep
fi

# What the run needs, checked before anything is made.
[[ -x $vmdep ]] || refuse "no vmdep binary at $vmdep: build it (cargo build --release) or set VMDEP"
switch_program=${switch_cmd%% *}
command -v "$switch_program" >/dev/null ||
    refuse "$switch_program not found: install bmv2 (github.com/p4lang/behavioral-model) built with" \
        "its gRPC target (simple_switch_grpc), or set VMDEP_SWITCH_CMD"
case $compiler in
p4c)
    command -v p4c >/dev/null ||
        refuse "p4c not found: install the P4 reference compiler (github.com/p4lang/p4c), or set" \
            "VMDEP_P4_COMPILER=vmdep to use vmdep's own compiler"
    ;;
vmdep) ;;
*) refuse "VMDEP_P4_COMPILER must be p4c or vmdep, not $compiler" ;;
esac
[[ $(id -u) -eq 0 ]] ||
    refuse "run as root (sudo -E): the demo makes network namespaces, veths and Open vSwitch bridges"
command -v ovs-vswitchd >/dev/null ||
    refuse "ovs-vswitchd not found: install Open vSwitch (Debian: openvswitch-switch)"

build=$out/build
mkdir -p "$build"
echo "== compiling p4/vmdep.p4 with $compiler into $build"
case $compiler in
p4c)
    p4c --target bmv2 --arch v1model -o "$build" \
        --p4runtime-files "$build/vmdep.p4info.txtpb" p4/vmdep.p4
    ;;
vmdep)
    "$vmdep" compile p4/vmdep.p4 -o "$build"
    ;;
esac
[[ -f $build/vmdep.json && -f $build/vmdep.p4info.txtpb ]] ||
    refuse "the compiler wrote no $build/vmdep.json and $build/vmdep.p4info.txtpb"

echo "== vmdep demo --netns with $switch_cmd as the switches (logs in $out/logs)"
exec "$vmdep" demo --netns --switch-cmd "$switch_cmd" --pipeline "$build/vmdep" -o "$out" "$@"
