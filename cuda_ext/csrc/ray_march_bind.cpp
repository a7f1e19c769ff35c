// Python bindings for the ray_march op: routes CPU tensors to ray_march_cpu.cpp and CUDA tensors to ray_march.cu
// (when built WITH_CUDA). Stepping rule and grid layout: ray_march.h.
#include <torch/extension.h>

#include "common.h"
#include "ray_march.h"

namespace {

namespace rm = nerfhead::ray_march;

void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* what) {
  TORCH_CHECK(a.device() == b.device(), "ray_march: ", what, " must be on the rays' device");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_march_forward(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min, const at::Tensor& t_max,
    const at::Tensor& bitfield, const at::Tensor& aabb, int64_t resolution, int64_t n_cascades, double step_size,
    double cone_angle, double dt_max, int64_t max_samples) {
  check_same_device(origins, dirs, "dirs");
  check_same_device(origins, t_min, "t_min");
  check_same_device(origins, t_max, "t_max");
  check_same_device(origins, bitfield, "bitfield");
  return NH_DISPATCH_DEVICE(origins,
                            rm::ray_march_forward_cpu(origins, dirs, t_min, t_max, bitfield, aabb, resolution,
                                                      n_cascades, step_size, cone_angle, dt_max, max_samples),
                            rm::ray_march_forward_cuda(origins, dirs, t_min, t_max, bitfield, aabb, resolution,
                                                       n_cascades, step_size, cone_angle, dt_max, max_samples));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ray_aabb_intersect(const at::Tensor& origins, const at::Tensor& dirs,
                                                                  const at::Tensor& aabb) {
  check_same_device(origins, dirs, "dirs");
  return NH_DISPATCH_DEVICE(origins, rm::ray_aabb_intersect_cpu(origins, dirs, aabb),
                            rm::ray_aabb_intersect_cuda(origins, dirs, aabb));
}

}  // namespace

void init_ray_march(pybind11::module_& m) {
  m.def("ray_march_forward", &ray_march_forward,
        "Occupancy-grid ray marching -> (packed_info [R,2] int64, ray_indices [S] int64, t_starts [S], t_ends [S], "
        "t_resume [R])",
        pybind11::arg("origins"), pybind11::arg("dirs"), pybind11::arg("t_min"), pybind11::arg("t_max"),
        pybind11::arg("bitfield"), pybind11::arg("aabb"), pybind11::arg("resolution"), pybind11::arg("n_cascades"),
        pybind11::arg("step_size"), pybind11::arg("cone_angle"), pybind11::arg("dt_max"), pybind11::arg("max_samples"));
  m.def("ray_aabb_intersect", &ray_aabb_intersect, "Slab test -> (t_min [R], t_max [R], hit [R] bool)",
        pybind11::arg("origins"), pybind11::arg("dirs"), pybind11::arg("aabb"));
}
