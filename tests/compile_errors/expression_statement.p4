// An expression that is neither an assignment nor a call.
control C(inout bit<8> x) {
    apply {
        x + 1;
    }
}
