#include <core.p4>
#define ETHERTYPE_IPV4 0x0800
const bit<16> T = ETHERTYPE_IPV4;
