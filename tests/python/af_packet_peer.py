"""The far ends of `vmdep switch`'s interface ports (tests/switch_af_packet.rs), run inside the
peer network namespace with the system python3.

Argument: the path of a file holding one JSON object {"phases": [{"send": [[IFNAME, HEX], ...], "expect": {IFNAME: COUNT,
...}}, ...], "quiet_ms": N}. Opens an AF_PACKET socket on every interface named (EtherType
0x88b5 only, the test's frames, so the kernel's own chatter stays out), prints LISTENING and
waits for a line (or end of file) on stdin. Then, phase by phase: sends the phase's frames in
order, back to back, and collects what arrives until each interface in the phase's "expect" has
received that many frames in all (counted from the start, earlier phases included). After the
last phase it collects `quiet_ms` more milliseconds (to catch extra frames, e.g. loops) and
prints {"received": {IFNAME: [HEX, ...]}, "kernel_drops": {IFNAME: N}} as one JSON line:
`kernel_drops` are frames the kernel dropped because this script's socket buffer was full, so
a loss here is told apart from one in the switch. Everything is bounded by a 10 s deadline.
(A file, not the argument itself: thousands of frames exceed the kernel's limit on one
argument.)

The sockets get a large receive buffer and are drained between sends, so frames the switch
forwards while this script is still sending are not lost here.
"""

import json
import select
import socket
import struct
import sys
import time

ETH_P_TEST = 0x88B5
PACKET_OUTGOING = 4
DEADLINE_S = 10.0
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER_BYTES = 8 << 20


def main():
    with open(sys.argv[1], encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    phases = spec["phases"]
    names = set()
    for phase in phases:
        names |= set(phase["expect"]) | {name for name, _ in phase["send"]}
    sockets = {}
    for name in sorted(names):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
        # Past net.core.rmem_max: the peer runs as root (it needs CAP_NET_RAW anyway).
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
        s.bind((name, ETH_P_TEST))
        s.setblocking(False)
        sockets[name] = s
    received = {name: [] for name in names}
    print("LISTENING", flush=True)
    sys.stdin.readline()

    def drain(s, name):
        while True:
            try:
                frame, addr = s.recvfrom(65536)
            except BlockingIOError:
                return
            if addr[2] != PACKET_OUTGOING:
                received[name].append(frame.hex())

    def drain_all():
        for name, s in sockets.items():
            drain(s, name)

    def collect_until(done, end):
        """Collects until done() or monotonic time `end`."""
        while not done():
            now = time.monotonic()
            if now >= end:
                return
            readable, _, _ = select.select(list(sockets.values()), [], [], end - now)
            for s in readable:
                drain(s, next(n for n, sock in sockets.items() if sock is s))

    deadline = time.monotonic() + DEADLINE_S
    for phase in phases:
        for name, hex_frame in phase["send"]:
            sockets[name].send(bytes.fromhex(hex_frame))
            drain_all()
        expect = phase["expect"]
        collect_until(lambda: all(len(received[n]) >= c for n, c in expect.items()), deadline)
    quiet_until = min(deadline, time.monotonic() + spec["quiet_ms"] / 1000.0)
    collect_until(lambda: False, quiet_until)

    kernel_drops = {}
    for name, s in sockets.items():
        _, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        kernel_drops[name] = drops
    print(json.dumps({"received": received, "kernel_drops": kernel_drops}), flush=True)


if __name__ == "__main__":
    main()
