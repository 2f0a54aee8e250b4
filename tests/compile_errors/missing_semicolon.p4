// A header field without its `;`.
#include <core.p4>

header ethernet_h {
    bit<48> dst;
    bit<48> src
    bit<16> ether_type;
}
