// Only <core.p4> and <v1model.p4> are built in.
#include <core.p4>
#include "headers.p4"
#include <psa.p4>
