// Python bindings for the hash_grid op (filled in by the op's implementation).
#include <torch/extension.h>

void init_hash_grid(pybind11::module_& m) { (void)m; }
