// A string literal that runs to the end of the line.
@name("ingress.counter) struct s_t { bit<8> x; }
