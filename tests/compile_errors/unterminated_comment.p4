#include <core.p4>
/* This comment never ends,
header h_t { bit<8> x; }
