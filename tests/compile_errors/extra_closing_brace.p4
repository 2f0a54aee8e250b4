// One `}` too many after a struct.
struct meta_t {
    bit<8> a;
}
}
