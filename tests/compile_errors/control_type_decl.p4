// A control type declaration (a prototype without a body); v1model's are built in.
control Ingress_t(inout bit<8> hdr);
