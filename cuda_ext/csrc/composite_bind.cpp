// Python bindings for the composite op (filled in by the op's implementation).
#include <torch/extension.h>

void init_composite(pybind11::module_& m) { (void)m; }
