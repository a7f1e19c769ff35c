// Python bindings for the ray_march op (filled in by the op's implementation).
#include <torch/extension.h>

void init_ray_march(pybind11::module_& m) { (void)m; }
