// exact, lpm, ternary, range and optional keys; a table's match_type follows its kinds.
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
    table t_lpm { key = { hdr.h.c : lpm; hdr.h.a : exact; } actions = { fwd; drop; } default_action = drop(); }
    table t_tern { key = { hdr.h.b : ternary; } actions = { fwd; NoAction; } size = 16; }
    table t_range { key = { hdr.h.b : range; m.x : exact; } actions = { fwd; } }
    table t_opt { key = { hdr.h.a : optional; hdr.g.isValid() : exact; } actions = { fwd; } }
    apply {
        t_lpm.apply();
        t_tern.apply();
        t_range.apply();
        t_opt.apply();
    }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.h); pkt.emit(hdr.g); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
