"""Drives `vmdep switch` with the real P4Runtime client p4runtime-shell (tests/switch_p4rt_shell.rs).

Pushes ref2_ternary_counters' pipeline, inserts ref2's STF entries by name, prints READY and waits
for one line on stdin (the Rust side sends frames through the UDP ports meanwhile), then reads the
direct counters of those entries and of both tables' default entries, and the indexed counter `Ing.per_port[0]`, and prints them as one
JSON object. Exit 2 when p4runtime-shell is not installed.
"""

import argparse
import json
import sys

try:
    import p4runtime_sh.shell as sh
except ImportError as err:  # pragma: no cover - reported to the Rust test
    print(f"p4runtime-shell is not installed: {err}", file=sys.stderr)
    sys.exit(2)


def acl(priority, action, port=None, src=None, dst=None, dport=None):
    te = sh.TableEntry("Ing.acl")(action=action)
    if src is not None:
        te.match["h.ip.src"] = src
    if dst is not None:
        te.match["h.ip.dst"] = dst
    if dport is not None:
        te.match["h.udp.dport"] = dport
    if port is not None:
        te.action["port"] = port
    te.priority = priority
    return te


def flow(src, dst):
    te = sh.TableEntry("Ing.flows")(action="Ing.track")
    te.match["h.ip.src"] = src
    te.match["h.ip.dst"] = dst
    return te


def direct_count(counter, entry):
    dce = sh.DirectCounterEntry(counter)
    dce.table_entry = entry
    found = list(dce.read())
    assert len(found) == 1, f"{counter}: {len(found)} entries read"
    return {"packets": found[0].packet_count, "bytes": found[0].byte_count}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc-addr", required=True)
    parser.add_argument("--device-id", type=int, required=True)
    parser.add_argument("--p4info", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    sh.setup(
        device_id=args.device_id,
        grpc_addr=args.grpc_addr,
        election_id=(0, 1),
        config=sh.FwdPipeConfig(args.p4info, args.json),
        verbose=False,
    )
    entries = {
        "e10": acl(10, "Ing.permit", port="1", src="10.0.0.0&&&255.0.0.0", dport="53&&&0xffff"),
        "e20": acl(20, "Ing.deny", src="10.0.0.66&&&255.255.255.255"),
        "e5": acl(5, "Ing.permit", port="2", dst="192.0.2.0&&&255.255.255.0"),
        "f1": flow("10.0.0.1", "192.0.2.7"),
    }
    for entry in entries.values():
        entry.insert()
    # Read-back by name: the switch returns what was written.
    read_back = list(sh.TableEntry("Ing.acl").read())
    assert len(read_back) == 3, f"{len(read_back)} acl entries read back"

    print("READY", flush=True)
    sys.stdin.readline()

    counts = {
        "e10": direct_count("Ing.acl_hits", entries["e10"]),
        "e20": direct_count("Ing.acl_hits", entries["e20"]),
        "e5": direct_count("Ing.acl_hits", entries["e5"]),
        "f1": direct_count("Ing.flow_bytes", entries["f1"]),
        # The default entries' counters: the frames each table missed.
        "acl_default": direct_count("Ing.acl_hits", sh.TableEntry("Ing.acl")(is_default=True)),
        "flows_default": direct_count(
            "Ing.flow_bytes", sh.TableEntry("Ing.flows")(is_default=True)
        ),
    }
    per_port = sh.CounterEntry("Ing.per_port")
    per_port.index = 0
    cell = list(per_port.read())[0]
    counts["per_port0"] = {"packets": cell.packet_count, "bytes": cell.byte_count}
    print(json.dumps(counts, sort_keys=True), flush=True)
    sh.teardown()


if __name__ == "__main__":
    main()
