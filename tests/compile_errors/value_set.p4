#include <core.p4>
parser P(packet_in pkt) {
    value_set<bit<16>>(4) ether_types;
    state start { transition accept; }
}
