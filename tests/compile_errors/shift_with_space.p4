// `>>` must be written without a space; `> >` is two comparisons.
const bit<8> X = 8w16 > > 2;
