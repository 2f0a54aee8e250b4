header ipv4_h { bit<32> src; }
header ipv6_h { bit<128> src; }
header_union ip_h { ipv4_h v4; ipv6_h v6; }
