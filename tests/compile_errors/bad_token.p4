// `$` is not a P4 character.
const bit<8> X = 1 $ 2;
