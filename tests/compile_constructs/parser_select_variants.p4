// select on a tuple with masks and don't-cares, a computed key, lookahead, verify and locals.
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; bit<16> b; bit<32> c; }
struct hs_t { h_t h; h_t g; }
struct m_t { bit<8> x; bit<16> y; bool f; }
parser P(packet_in pkt, out hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    bit<8> n = 0;
    state start {
        pkt.extract(hdr.h);
        n = hdr.h.a + 1;
        verify(hdr.h.a != 0, error.NoMatch);
        transition select(hdr.h.a, hdr.h.b[15:8]) {
            (1, 0x80 &&& 0xf0): second;
            (_, 2): second;
            default: peek;
        }
    }
    state peek { transition select(pkt.lookahead<bit<8>>()) { 0: reject; default: second; } }
    state second { m.x = n; pkt.extract(hdr.g); transition accept; }
}
control VC(inout hs_t hdr, inout m_t m) { apply { } }
control I(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) {

    apply {

    }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.h); pkt.emit(hdr.g); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
