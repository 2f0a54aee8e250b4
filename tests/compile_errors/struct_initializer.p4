struct pair_t { bit<8> a; bit<8> b; }
const pair_t P = { a = 1, b = 2 };
