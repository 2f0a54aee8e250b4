parser Parser_t(packet_in pkt);
