// const entries with every keyset form and explicit priorities (a larger one wins).
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
    action fwd(bit<9> p) { sm.egress_spec = p; }
    action drop() { mark_to_drop(sm); }
    table t {
        key = { hdr.h.a : ternary; hdr.h.b : range; }
        actions = { fwd; drop; }
        const entries = {
            priority = 30 : (0x0a &&& 0x0f, 1 .. 100) : fwd(1);
            priority = 20 : (_, 200) : fwd(2);
            priority = 10 : (5, _) : drop();
        }
    }
    apply {
        t.apply();
    }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.h); pkt.emit(hdr.g); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
