// @name (relative to the control, and global with a leading dot, also on a key) and @id (with and
// without the kind's prefix), as p4c honors them in names and P4Info ids.
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; bit<16> b; }
struct hs_t { h_t h; }
struct m_t { }
parser P(packet_in pkt, out hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(hdr.h); transition accept; }
}
control VC(inout hs_t hdr, inout m_t m) { apply { } }
control I(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    @id(7) action fwd(bit<9> p) { sm.egress_spec = p; }
    @name(".global_drop") action drop() { mark_to_drop(sm); }
    @name("acl_table") @id(0x02000042)
    table t { key = { hdr.h.a : exact @name("first_byte"); } actions = { fwd; drop; } default_action = drop(); }
    apply { t.apply(); }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.h); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
