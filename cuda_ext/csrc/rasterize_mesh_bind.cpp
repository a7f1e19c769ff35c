// Python bindings for the rasterize_mesh op: routes CPU tensors to the C++ kernel, CUDA tensors to the CUDA
// kernel (when built with WITH_CUDA).
#include <torch/extension.h>

#include "common.h"
#include "rasterize_mesh.h"

namespace {

std::tuple<at::Tensor, at::Tensor> rasterize_mesh_forward(const at::Tensor& verts_screen, const at::Tensor& faces,
                                                          int64_t width, int64_t height, double near) {
  TORCH_CHECK(verts_screen.dim() == 3 && verts_screen.size(2) == 3, "verts_screen must be [B, V, 3]");
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3, "faces must be [F, 3]");
  TORCH_CHECK(faces.scalar_type() == at::kInt, "faces must be int32");
  TORCH_CHECK(width >= 0 && height >= 0, "width and height must be non-negative");
  TORCH_CHECK(verts_screen.device() == faces.device(), "verts_screen and faces must be on the same device");
  NH_CHECK_FLOAT(verts_screen);
  NH_CHECK_CONTIGUOUS(verts_screen);
  NH_CHECK_CONTIGUOUS(faces);
  if (faces.numel() > 0) {
    // Out-of-range indices would read outside the vertex buffer.
    const auto lo = faces.min().item<int32_t>();
    const auto hi = faces.max().item<int32_t>();
    TORCH_CHECK(lo >= 0 && hi < verts_screen.size(1), "faces index out of range [0, V)");
  }
  if (verts_screen.is_cuda()) {
#ifdef WITH_CUDA
    return rasterize_mesh_forward_cuda(verts_screen, faces, width, height, near);
#else
    TORCH_CHECK(false, "nerfhead._C was built without CUDA kernels");
#endif
  }
  return rasterize_mesh_forward_cpu(verts_screen, faces, width, height, near);
}

}  // namespace

void init_rasterize_mesh(pybind11::module_& m) {
  m.def("rasterize_mesh_forward", &rasterize_mesh_forward,
        "Z-buffer visibility of screen-space triangles: (verts_screen [B,V,3] (u,v,z) float32, faces [F,3] int32, "
        "width, height, near) -> (tri_id [B,H,W] int32, -1 = background; depth [B,H,W] float32, 0 = background)",
        pybind11::arg("verts_screen"), pybind11::arg("faces"), pybind11::arg("width"), pybind11::arg("height"),
        pybind11::arg("near"));
}
