"""Reads back, with the real P4Runtime client p4runtime-shell, what vmdep's controller session
wrote to `vmdep switch` (tests/controller_session.rs, test
`p4runtime_shell_reads_back_what_the_session_wrote`).

Joins as a backup controller (election id 1, lower than the session's), takes the P4Info from
the switch, reads `MyIngress.ipv4_lpm` and `MyIngress.vm_pair` (with counters) and prints them
as one JSON line, names resolved through the P4Info. Exit 2 when p4runtime-shell is not
installed.
"""

import argparse
import json
import sys

try:
    import p4runtime_sh.shell as sh
except ImportError as err:  # pragma: no cover - reported to the Rust test
    print(f"p4runtime-shell is not installed: {err}", file=sys.stderr)
    sys.exit(2)

from p4rt_shell_vmdep import describe


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc-addr", required=True)
    parser.add_argument("--device-id", type=int, required=True)
    args = parser.parse_args()

    sh.setup(device_id=args.device_id, grpc_addr=args.grpc_addr, election_id=(0, 1), verbose=False)
    tables = {}
    for table in ("MyIngress.ipv4_lpm", "MyIngress.vm_pair"):
        entries = []
        for te in sh.TableEntry(table).read():
            entry = describe(table, te)
            if table == "MyIngress.vm_pair":
                dce = sh.DirectCounterEntry("MyIngress.vm_pair_counter")
                dce.table_entry = te
                (counter,) = list(dce.read())
                entry["packets"] = counter.packet_count
                entry["bytes"] = counter.byte_count
            entries.append(entry)
        tables[table] = sorted(entries, key=lambda e: json.dumps(e, sort_keys=True))
    print(json.dumps(tables, sort_keys=True), flush=True)
    sh.teardown()


if __name__ == "__main__":
    main()
