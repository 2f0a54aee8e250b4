bit<8> max(in bit<8> a, in bit<8> b) {
    return a > b ? a : b;
}
