// 132 bits do not fit vmdep's 128-bit literals.
const bit<128> BIG = 0x1_0000_0000_0000_0000_0000_0000_0000_0000;
