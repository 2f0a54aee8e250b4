// A width prefix of zero bits.
const bit<8> X = 0w5;
