// One error is reported per declaration; the parser resumes at the next one.
header a_h { bit<8> x }
header b_h { bit<8> y; }
struct s_t { a_h a; b_h b }
const bit<8> K = ;
control C() { apply { } }
