// clone to a session, a digest of a struct, a crc32 hash.
#include <core.p4>
#include <v1model.p4>
struct learn_t { bit<16> b; bit<9> port; }
header h_t { bit<8> a; bit<16> b; bit<32> c; }
struct hs_t { h_t h; h_t g; }
struct m_t { bit<8> x; bit<16> y; bool f; }
parser P(packet_in pkt, out hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(hdr.h); transition accept; }
}
control VC(inout hs_t hdr, inout m_t m) { apply { } }
control I(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) {

    apply {
        clone(CloneType.I2E, 100);
        digest<learn_t>(1, { hdr.h.b, sm.ingress_port });
        hash(m.y, HashAlgorithm.crc32, 16w0, { hdr.h.a, hdr.h.c }, 32w1024);
    }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.h); pkt.emit(hdr.g); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
