// `2` is not a binary digit.
const bit<4> MASK = 0b1012;
