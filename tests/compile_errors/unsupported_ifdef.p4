#include <core.p4>
#ifdef DEBUG
const bit<8> LEVEL = 1;
#endif
