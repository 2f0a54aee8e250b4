"""Drives `vmdep switch` running p4/vmdep.p4 with the real P4Runtime client p4runtime-shell
(tests/switch_p4rt_shell.rs, test `p4runtime_shell_counts_a_vm_pair_on_vmdep_p4`).

Pushes the pipeline `vmdep compile` built, inserts the IPv4 routes and one `MyIngress.vm_pair`
entry given on the command line, reads both tables back and prints what the switch returned as
one JSON line, then READY; waits for one line on stdin (the Rust side sends frames through the
UDP ports meanwhile), reads `MyIngress.vm_pair_counter` for the pair and prints it as one JSON
line. Exit 2 when p4runtime-shell is not installed.
"""

import argparse
import json
import sys

try:
    import p4runtime_sh.shell as sh
except ImportError as err:  # pragma: no cover - reported to the Rust test
    print(f"p4runtime-shell is not installed: {err}", file=sys.stderr)
    sys.exit(2)


def route(spec):
    """`PREFIX/LEN,SRC_MAC,DST_MAC,PORT` → an ipv4_lpm entry to set_next_hop."""
    prefix, src_mac, dst_mac, port = spec.split(",")
    te = sh.TableEntry("MyIngress.ipv4_lpm")(action="MyIngress.set_next_hop")
    te.match["hdr.ipv4.dstAddr"] = prefix
    te.action["src_mac"] = src_mac
    te.action["dst_mac"] = dst_mac
    te.action["port"] = port
    return te


def pair(spec, idle_timeout_ns):
    """`SRC,DST` → a vm_pair entry that counts the pair."""
    src, dst = spec.split(",")
    te = sh.TableEntry("MyIngress.vm_pair")(action="MyIngress.count_pair")
    te.match["hdr.ipv4.srcAddr"] = src
    te.match["hdr.ipv4.dstAddr"] = dst
    te.idle_timeout_ns = idle_timeout_ns
    return te


def field_match(table, mf):
    """One FieldMatch as the switch returned it, with numbers instead of bytes."""
    name = sh.context.get_mf_name(table, mf.field_id)
    kind = mf.WhichOneof("field_match_type")
    if kind == "exact":
        return name, {"exact": int.from_bytes(mf.exact.value, "big")}
    if kind == "lpm":
        return name, {
            "lpm": int.from_bytes(mf.lpm.value, "big"),
            "prefix_len": mf.lpm.prefix_len,
        }
    raise AssertionError(f"{table}: unexpected match kind {kind} for {name}")


def describe(table, entry):
    """A table entry read back, with names resolved through the P4Info."""
    msg = entry.msg()
    action = msg.action.action
    action_name = sh.context.get_name_from_id(action.action_id)
    return {
        "match": dict(field_match(table, mf) for mf in msg.match),
        "action": action_name,
        "params": {
            sh.context.get_param_name(action_name, p.param_id): int.from_bytes(p.value, "big")
            for p in action.params
        },
        "priority": msg.priority,
        "idle_timeout_ns": msg.idle_timeout_ns,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc-addr", required=True)
    parser.add_argument("--device-id", type=int, required=True)
    parser.add_argument("--p4info", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--route", action="append", required=True)
    parser.add_argument("--pair", required=True)
    parser.add_argument("--idle-timeout-ns", type=int, default=0)
    args = parser.parse_args()

    sh.setup(
        device_id=args.device_id,
        grpc_addr=args.grpc_addr,
        election_id=(0, 1),
        config=sh.FwdPipeConfig(args.p4info, args.json),
        verbose=False,
    )
    for spec in args.route:
        route(spec).insert()
    measured = pair(args.pair, args.idle_timeout_ns)
    measured.insert()

    tables = {}
    for table in ("MyIngress.ipv4_lpm", "MyIngress.vm_pair"):
        tables[table] = [describe(table, te) for te in sh.TableEntry(table).read()]
    print(json.dumps(tables, sort_keys=True), flush=True)
    print("READY", flush=True)
    sys.stdin.readline()

    dce = sh.DirectCounterEntry("MyIngress.vm_pair_counter")
    dce.table_entry = measured
    found = list(dce.read())
    assert len(found) == 1, f"vm_pair_counter: {len(found)} entries read"
    print(
        json.dumps({"packets": found[0].packet_count, "bytes": found[0].byte_count}),
        flush=True,
    )
    sh.teardown()


if __name__ == "__main__":
    main()
