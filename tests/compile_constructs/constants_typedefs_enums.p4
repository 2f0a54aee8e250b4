// consts, typedefs, a serializable enum and error constants.
#include <core.p4>
#include <v1model.p4>
typedef bit<16> port16_t;
const bit<8> LIMIT = 3 * 4;
const port16_t WIDE = 16w1 << 10;
enum bit<8> Color { Red = 1, Green = 2 }
error { BadThing }
header h_t { bit<8> a; bit<16> b; bit<32> c; }
struct hs_t { h_t h; h_t g; }
struct m_t { bit<8> x; bit<16> y; bool f; }
parser P(packet_in pkt, out hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(hdr.h); transition accept; }
}
control VC(inout hs_t hdr, inout m_t m) { apply { } }
control I(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) {

    apply {
        hdr.h.a = (bit<8>) Color.Green + LIMIT;
        if (sm.parser_error == error.BadThing) { m.y = WIDE; }
    }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.h); pkt.emit(hdr.g); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
