// The `if` block is never closed, so the control swallows the rest of the file.
#include <core.p4>
#include <v1model.p4>

control Eg(inout standard_metadata_t sm) {
    apply {
        if (sm.egress_port == 1) {
            mark_to_drop(sm);
    }
}
