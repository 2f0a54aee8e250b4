// Externs come from the built-in core.p4 and v1model.p4; programs cannot declare new ones.
extern my_counter {
    my_counter(bit<32> size);
    void count(in bit<32> index);
}
