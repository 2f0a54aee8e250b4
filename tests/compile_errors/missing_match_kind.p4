control C(inout bit<8> x) {
    action a() { }
    table t {
        key = { x; }
        actions = { a; }
    }
    apply { t.apply(); }
}
