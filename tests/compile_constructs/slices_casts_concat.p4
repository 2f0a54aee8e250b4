// slices (read and write), casts, concatenation, shifts and arithmetic.
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; bit<16> b; bit<32> c; }
struct hs_t { h_t h; h_t g; }
struct m_t { bit<8> x; bit<16> y; bool f; }
parser P(packet_in pkt, out hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(hdr.h); transition accept; }
}
control VC(inout hs_t hdr, inout m_t m) { apply { } }
control I(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) {

    apply {
        m.x = hdr.h.b[11:4];
        hdr.h.b[3:0] = 4w0xf;
        hdr.h.c = hdr.h.a ++ hdr.h.b ++ m.x;
        m.y = (bit<16>) hdr.h.c + (bit<16>) m.x;
        hdr.h.a = (hdr.h.a << 2) | (m.x >> 1) ^ ~m.x;
        m.y = m.y - hdr.h.b;
        m.f = hdr.h.a > m.x && !m.f;
        hdr.h.a = m.f ? 8w1 : 8w2;
    }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.h); pkt.emit(hdr.g); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
