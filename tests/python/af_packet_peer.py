"""The far ends of `vmdep switch`'s interface ports (tests/switch_af_packet.rs), run inside the
peer network namespace with the system python3.

Argument: one JSON object {"send": [[IFNAME, HEX], ...], "expect": {IFNAME: COUNT, ...},
"quiet_ms": N}. Opens an AF_PACKET socket on every interface named (EtherType 0x88b5 only, the
test's frames, so the kernel's own chatter stays out), prints LISTENING and waits for a line (or
end of file) on stdin, sends the frames in order, collects what
arrives until each interface got its count and then `quiet_ms` more milliseconds (to catch
extra frames, e.g. loops), and prints {IFNAME: [HEX, ...]} as one JSON line. Everything is
bounded by a 10 s deadline.
"""

import json
import select
import socket
import sys
import time

ETH_P_TEST = 0x88B5
PACKET_OUTGOING = 4
DEADLINE_S = 10.0


def main():
    spec = json.loads(sys.argv[1])
    names = set(spec["expect"]) | {name for name, _ in spec["send"]}
    sockets = {}
    for name in sorted(names):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
        s.bind((name, ETH_P_TEST))
        s.setblocking(False)
        sockets[name] = s
    received = {name: [] for name in spec["expect"]}
    print("LISTENING", flush=True)
    sys.stdin.readline()

    for name, hex_frame in spec["send"]:
        sockets[name].send(bytes.fromhex(hex_frame))

    start = time.monotonic()
    quiet_until = None
    while True:
        now = time.monotonic()
        if now - start > DEADLINE_S:
            break
        done = all(len(received[n]) >= c for n, c in spec["expect"].items())
        if done and quiet_until is None:
            quiet_until = now + spec["quiet_ms"] / 1000.0
        if quiet_until is not None and now >= quiet_until:
            break
        end = quiet_until if quiet_until is not None else start + DEADLINE_S
        readable, _, _ = select.select(list(sockets.values()), [], [], max(0.0, end - now))
        for s in readable:
            name = next(n for n, sock in sockets.items() if sock is s)
            frame, addr = s.recvfrom(65536)
            if addr[2] == PACKET_OUTGOING:
                continue
            received.setdefault(name, []).append(frame.hex())
    print(json.dumps(received), flush=True)


if __name__ == "__main__":
    main()
