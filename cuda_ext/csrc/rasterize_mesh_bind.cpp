// Python bindings for the rasterize_mesh op (filled in by the op's implementation).
#include <torch/extension.h>

void init_rasterize_mesh(pybind11::module_& m) { (void)m; }
