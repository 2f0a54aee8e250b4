/*
 * vmdep data plane (P4_16, v1model).
 *
 * Every switch of the fabric runs this program. It routes IPv4 by longest prefix (the controller
 * installs the routes) and, for the VM pairs the controller chose to measure on this switch,
 * counts packets and bytes exactly in `vm_pair`, whose entries the controller reads and whose
 * idle timeouts tell it that a pair went quiet.
 *
 * The controller finds everything by name through the P4Info, so the names below are part of
 * vmdep's interface: MyIngress.ipv4_lpm, MyIngress.vm_pair, MyIngress.vm_pair_counter,
 * MyIngress.set_next_hop, MyIngress.count_pair, MyIngress.drop.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<8>  IPPROTO_TCP = 6;
const bit<8>  IPPROTO_UDP = 17;

/* Table capacities. vm_pair holds the counting entries a switch can offer the controller (the
 * topology file sets how many of them the controller may use). */
const bit<32> IPV4_LPM_SIZE = 1024;
const bit<32> VM_PAIR_SIZE = 16384;

typedef bit<9>  port_t;
typedef bit<48> mac_addr_t;
typedef bit<32> ipv4_addr_t;

header ethernet_t {
    mac_addr_t dstAddr;
    mac_addr_t srcAddr;
    bit<16>    etherType;
}

header ipv4_t {
    bit<4>      version;
    bit<4>      ihl;
    bit<8>      diffserv;
    bit<16>     totalLen;
    bit<16>     identification;
    bit<3>      flags;
    bit<13>     fragOffset;
    bit<8>      ttl;
    bit<8>      protocol;
    bit<16>     hdrChecksum;
    ipv4_addr_t srcAddr;
    ipv4_addr_t dstAddr;
}

header tcp_t {
    bit<16> srcPort;
    bit<16> dstPort;
    bit<32> seqNo;
    bit<32> ackNo;
    bit<4>  dataOffset;
    bit<4>  res;
    bit<8>  flags;
    bit<16> window;
    bit<16> checksum;
    bit<16> urgentPtr;
}

header udp_t {
    bit<16> srcPort;
    bit<16> dstPort;
    bit<16> length;
    bit<16> checksum;
}

struct headers_t {
    ethernet_t ethernet;
    ipv4_t     ipv4;
    tcp_t      tcp;
    udp_t      udp;
}

struct metadata_t {
}

parser MyParser(packet_in packet,
                out headers_t hdr,
                inout metadata_t meta,
                inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {
            ETHERTYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }

    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        /* Transport headers only in first fragments without IP options, where they really are. */
        transition select(hdr.ipv4.fragOffset, hdr.ipv4.ihl, hdr.ipv4.protocol) {
            (0, 5, IPPROTO_TCP): parse_tcp;
            (0, 5, IPPROTO_UDP): parse_udp;
            default: accept;
        }
    }

    state parse_tcp {
        packet.extract(hdr.tcp);
        transition accept;
    }

    state parse_udp {
        packet.extract(hdr.udp);
        transition accept;
    }
}

control MyVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        verify_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.srcAddr, hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum,
            HashAlgorithm.csum16);
    }
}

control MyIngress(inout headers_t hdr,
                  inout metadata_t meta,
                  inout standard_metadata_t standard_metadata) {
    /* Exact per-pair counts: one entry per VM pair measured on this switch. */
    direct_counter(CounterType.packets_and_bytes) vm_pair_counter;

    action drop() {
        mark_to_drop(standard_metadata);
    }

    action set_next_hop(mac_addr_t src_mac, mac_addr_t dst_mac, port_t port) {
        standard_metadata.egress_spec = port;
        hdr.ethernet.srcAddr = src_mac;
        hdr.ethernet.dstAddr = dst_mac;
        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
    }

    table ipv4_lpm {
        key = {
            hdr.ipv4.dstAddr : lpm;
        }
        actions = {
            set_next_hop;
            drop;
        }
        default_action = drop();
        size = IPV4_LPM_SIZE;
    }

    action count_pair() {
        vm_pair_counter.count();
    }

    table vm_pair {
        key = {
            hdr.ipv4.srcAddr : exact;
            hdr.ipv4.dstAddr : exact;
        }
        actions = {
            count_pair;
            NoAction;
        }
        default_action = NoAction();
        counters = vm_pair_counter;
        support_timeout = true;
        size = VM_PAIR_SIZE;
    }

    apply {
        if (!hdr.ipv4.isValid()) {
            /* The fabric routes IPv4 only; servers answer ARP for their VMs themselves. */
            drop();
        } else if (standard_metadata.checksum_error == 1) {
            drop();
        } else if (hdr.ipv4.ttl <= 1) {
            drop();
        } else {
            vm_pair.apply();
            ipv4_lpm.apply();
        }
    }
}

control MyEgress(inout headers_t hdr,
                 inout metadata_t meta,
                 inout standard_metadata_t standard_metadata) {
    apply { }
}

control MyComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.srcAddr, hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum,
            HashAlgorithm.csum16);
    }
}

control MyDeparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.ethernet);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.tcp);
        packet.emit(hdr.udp);
    }
}

V1Switch(MyParser(),
         MyVerifyChecksum(),
         MyIngress(),
         MyEgress(),
         MyComputeChecksum(),
         MyDeparser()) main;
