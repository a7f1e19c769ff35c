// The nerfhead._C module: each op registers its functions from its own <op>_bind.cpp.
#include <torch/extension.h>

void init_hash_grid(pybind11::module_& m);
void init_ray_march(pybind11::module_& m);
void init_composite(pybind11::module_& m);
void init_rasterize_mesh(pybind11::module_& m);
void init_rasterize_gaussians(pybind11::module_& m);
void init_pose_splats(pybind11::module_& m);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nerfhead kernels: C++ CPU (OpenMP) and, when built with WITH_CUDA, CUDA";
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  init_hash_grid(m);
  init_ray_march(m);
  init_composite(m);
  init_rasterize_mesh(m);
  init_rasterize_gaussians(m);
  init_pose_splats(m);
}
