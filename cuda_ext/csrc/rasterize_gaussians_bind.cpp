// Python bindings for the rasterize_gaussians op: checks the inputs and routes CPU tensors to the C++ kernel.
// There is no CUDA kernel: on CUDA tensors nerfhead.ops.rasterize_gaussians calls gsplat.
#include <torch/extension.h>

#include <vector>

#include "common.h"
#include "rasterize_gaussians.h"

namespace {

void check_gaussians(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                     const at::Tensor& opacities, const at::Tensor& radii, int64_t width, int64_t height,
                     int64_t tile_size) {
  TORCH_CHECK(!means2d.is_cuda(),
              "rasterize_gaussians: nerfhead._C has no CUDA kernel for this op (CUDA tensors go to gsplat)");
  TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "means2d must be [C, N, 2]");
  const int64_t C = means2d.size(0), N = means2d.size(1);
  TORCH_CHECK(conics.dim() == 3 && conics.size(0) == C && conics.size(1) == N && conics.size(2) == 3,
              "conics must be [C, N, 3]");
  TORCH_CHECK(colors.dim() == 3 && colors.size(0) == C && colors.size(1) == N && colors.size(2) >= 1,
              "colors must be [C, N, D]");
  TORCH_CHECK(opacities.dim() == 2 && opacities.size(0) == C && opacities.size(1) == N, "opacities must be [C, N]");
  TORCH_CHECK(radii.dim() == 3 && radii.size(0) == C && radii.size(1) == N && radii.size(2) == 2,
              "radii must be [C, N, 2]");
  TORCH_CHECK(radii.scalar_type() == at::kInt, "radii must be int32");
  TORCH_CHECK(means2d.scalar_type() == at::kFloat || means2d.scalar_type() == at::kDouble,
              "means2d must be float32 or float64");
  for (const at::Tensor* t : {&conics, &colors, &opacities}) {
    TORCH_CHECK(t->scalar_type() == means2d.scalar_type(), "all float inputs must share means2d's dtype");
  }
  for (const at::Tensor* t : {&means2d, &conics, &colors, &opacities, &radii}) {
    NH_CHECK_CPU(*t);
    NH_CHECK_CONTIGUOUS(*t);
  }
  TORCH_CHECK(width >= 0 && height >= 0, "width and height must be non-negative");
  TORCH_CHECK(tile_size >= 1 && tile_size <= 64, "tile_size must be in [1, 64]");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_forward(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& depths, const at::Tensor& radii, int64_t width, int64_t height, int64_t tile_size) {
  check_gaussians(means2d, conics, colors, opacities, radii, width, height, tile_size);
  TORCH_CHECK(depths.sizes() == opacities.sizes() && depths.scalar_type() == means2d.scalar_type(),
              "depths must be [C, N] with means2d's dtype");
  NH_CHECK_CPU(depths);
  NH_CHECK_CONTIGUOUS(depths);
  return rasterize_gaussians_forward_cpu(means2d, conics, colors, opacities, depths, radii, width, height, tile_size);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_backward(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& radii, const at::Tensor& t_final, const at::Tensor& last, const at::Tensor& tile_offsets,
    const at::Tensor& flat_ids, const at::Tensor& v_render, const at::Tensor& v_alpha, int64_t width, int64_t height,
    int64_t tile_size) {
  check_gaussians(means2d, conics, colors, opacities, radii, width, height, tile_size);
  const int64_t C = means2d.size(0), D = colors.size(2);
  const int64_t TT = ((width + tile_size - 1) / tile_size) * ((height + tile_size - 1) / tile_size);
  TORCH_CHECK(t_final.sizes() == at::IntArrayRef({C, height, width}) && t_final.scalar_type() == means2d.scalar_type(),
              "t_final must be [C, H, W]");
  TORCH_CHECK(last.sizes() == t_final.sizes() && last.scalar_type() == at::kInt, "last must be [C, H, W] int32");
  TORCH_CHECK(tile_offsets.dim() == 1 && tile_offsets.size(0) == C * TT + 1 && tile_offsets.scalar_type() == at::kLong,
              "tile_offsets must be [C * n_tiles + 1] int64");
  TORCH_CHECK(flat_ids.dim() == 1 && flat_ids.scalar_type() == at::kInt, "flat_ids must be [n_isect] int32");
  TORCH_CHECK(
      v_render.sizes() == at::IntArrayRef({C, height, width, D}) && v_render.scalar_type() == means2d.scalar_type(),
      "v_render must be [C, H, W, D]");
  TORCH_CHECK(
      v_alpha.sizes() == at::IntArrayRef({C, height, width, 1}) && v_alpha.scalar_type() == means2d.scalar_type(),
      "v_alpha must be [C, H, W, 1]");
  for (const at::Tensor* t : {&t_final, &last, &tile_offsets, &flat_ids, &v_render, &v_alpha}) {
    NH_CHECK_CPU(*t);
    NH_CHECK_CONTIGUOUS(*t);
  }
  return rasterize_gaussians_backward_cpu(means2d, conics, colors, opacities, radii, t_final, last, tile_offsets,
                                          flat_ids, v_render, v_alpha, width, height, tile_size);
}

void check_projection(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                      const at::Tensor& viewmats, const at::Tensor& Ks, const at::Tensor& sh_coeffs,
                      int64_t sh_degree) {
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "means must be [N, 3]");
  const int64_t N = means.size(0);
  TORCH_CHECK(quats.dim() == 2 && quats.size(0) == N && quats.size(1) == 4, "quats must be [N, 4]");
  TORCH_CHECK(scales.dim() == 2 && scales.size(0) == N && scales.size(1) == 3, "scales must be [N, 3]");
  TORCH_CHECK(viewmats.dim() == 3 && viewmats.size(1) == 4 && viewmats.size(2) == 4, "viewmats must be [C, 4, 4]");
  TORCH_CHECK(Ks.dim() == 3 && Ks.size(0) == viewmats.size(0) && Ks.size(1) == 3 && Ks.size(2) == 3,
              "Ks must be [C, 3, 3]");
  TORCH_CHECK(sh_degree <= 3, "sh_degree must be at most 3");
  if (sh_degree >= 0) {
    TORCH_CHECK(sh_coeffs.dim() == 3 && sh_coeffs.size(0) == N && sh_coeffs.size(2) == 3 &&
                    sh_coeffs.size(1) >= (sh_degree + 1) * (sh_degree + 1),
                "sh_coeffs must be [N, K, 3] with K >= (sh_degree + 1)^2");
  }
  TORCH_CHECK(means.scalar_type() == at::kFloat || means.scalar_type() == at::kDouble,
              "means must be float32 or float64");
  std::vector<const at::Tensor*> ts = {&means, &quats, &scales, &viewmats, &Ks};
  if (sh_degree >= 0) ts.push_back(&sh_coeffs);
  for (const at::Tensor* t : ts) {
    TORCH_CHECK(t->scalar_type() == means.scalar_type(), "all float inputs must share means' dtype");
    NH_CHECK_CPU(*t);
    NH_CHECK_CONTIGUOUS(*t);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_project_forward(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& opacities,
    const at::Tensor& viewmats, const at::Tensor& Ks, const at::Tensor& sh_coeffs, int64_t sh_degree, int64_t width,
    int64_t height, double eps2d, double near_plane, double far_plane) {
  check_projection(means, quats, scales, viewmats, Ks, sh_coeffs, sh_degree);
  TORCH_CHECK(
      opacities.dim() == 1 && opacities.size(0) == means.size(0) && opacities.scalar_type() == means.scalar_type(),
      "opacities must be [N] with means' dtype");
  NH_CHECK_CPU(opacities);
  NH_CHECK_CONTIGUOUS(opacities);
  return rasterize_gaussians_project_forward_cpu(means, quats, scales, opacities, viewmats, Ks, sh_coeffs, sh_degree,
                                                 width, height, eps2d, near_plane, far_plane);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_project_backward(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& viewmats,
    const at::Tensor& Ks, const at::Tensor& sh_coeffs, int64_t sh_degree, int64_t width, int64_t height, double eps2d,
    double near_plane, double far_plane, const at::Tensor& radii, const at::Tensor& v_means2d,
    const at::Tensor& v_conics, const at::Tensor& v_depths, const at::Tensor& v_colors) {
  check_projection(means, quats, scales, viewmats, Ks, sh_coeffs, sh_degree);
  const int64_t C = viewmats.size(0), N = means.size(0);
  TORCH_CHECK(radii.sizes() == at::IntArrayRef({C, N, 2}) && radii.scalar_type() == at::kInt,
              "radii must be [C, N, 2] int32");
  TORCH_CHECK(v_means2d.sizes() == at::IntArrayRef({C, N, 2}), "v_means2d must be [C, N, 2]");
  TORCH_CHECK(v_conics.sizes() == at::IntArrayRef({C, N, 3}), "v_conics must be [C, N, 3]");
  TORCH_CHECK(v_depths.sizes() == at::IntArrayRef({C, N}), "v_depths must be [C, N]");
  if (sh_degree >= 0) TORCH_CHECK(v_colors.sizes() == at::IntArrayRef({C, N, 3}), "v_colors must be [C, N, 3]");
  std::vector<const at::Tensor*> ts = {&radii, &v_means2d, &v_conics, &v_depths};
  if (sh_degree >= 0) ts.push_back(&v_colors);
  for (const at::Tensor* t : ts) {
    TORCH_CHECK(t == &radii || t->scalar_type() == means.scalar_type(), "gradients must have means' dtype");
    NH_CHECK_CPU(*t);
    NH_CHECK_CONTIGUOUS(*t);
  }
  return rasterize_gaussians_project_backward_cpu(means, quats, scales, viewmats, Ks, sh_coeffs, sh_degree, width,
                                                  height, eps2d, near_plane, far_plane, radii, v_means2d, v_conics,
                                                  v_depths, v_colors);
}

}  // namespace

void init_rasterize_gaussians(pybind11::module_& m) {
  m.def("rasterize_gaussians_forward", &rasterize_gaussians_forward,
        "Front-to-back compositing of projected 2D Gaussians (CPU): (means2d [C,N,2], conics [C,N,3], colors "
        "[C,N,D], opacities [C,N], depths [C,N], radii [C,N,2] int32, width, height, tile_size) -> (render "
        "[C,H,W,D], alpha [C,H,W,1], t_final [C,H,W], last [C,H,W] int32, tile_offsets int64, flat_ids int32)",
        pybind11::arg("means2d"), pybind11::arg("conics"), pybind11::arg("colors"), pybind11::arg("opacities"),
        pybind11::arg("depths"), pybind11::arg("radii"), pybind11::arg("width"), pybind11::arg("height"),
        pybind11::arg("tile_size") = 16);
  m.def("rasterize_gaussians_backward", &rasterize_gaussians_backward,
        "Backward of rasterize_gaussians_forward: -> (v_means2d, v_conics, v_colors, v_opacities)",
        pybind11::arg("means2d"), pybind11::arg("conics"), pybind11::arg("colors"), pybind11::arg("opacities"),
        pybind11::arg("radii"), pybind11::arg("t_final"), pybind11::arg("last"), pybind11::arg("tile_offsets"),
        pybind11::arg("flat_ids"), pybind11::arg("v_render"), pybind11::arg("v_alpha"), pybind11::arg("width"),
        pybind11::arg("height"), pybind11::arg("tile_size") = 16);
  m.def("rasterize_gaussians_project_forward", &rasterize_gaussians_project_forward,
        "EWA projection of 3D Gaussians into C cameras and SH colours (CPU): (means, quats, scales, opacities, "
        "viewmats, Ks, sh_coeffs, sh_degree (-1: none), width, height, eps2d, near_plane, far_plane) -> (means2d "
        "[C,N,2], conics [C,N,3], depths [C,N], radii [C,N,2] int32, colors [C,N,3] or empty)",
        pybind11::arg("means"), pybind11::arg("quats"), pybind11::arg("scales"), pybind11::arg("opacities"),
        pybind11::arg("viewmats"), pybind11::arg("Ks"), pybind11::arg("sh_coeffs"), pybind11::arg("sh_degree"),
        pybind11::arg("width"), pybind11::arg("height"), pybind11::arg("eps2d"), pybind11::arg("near_plane"),
        pybind11::arg("far_plane"));
  m.def("rasterize_gaussians_project_backward", &rasterize_gaussians_project_backward,
        "Backward of rasterize_gaussians_project_forward: -> (v_means, v_quats, v_scales, v_sh_coeffs)",
        pybind11::arg("means"), pybind11::arg("quats"), pybind11::arg("scales"), pybind11::arg("viewmats"),
        pybind11::arg("Ks"), pybind11::arg("sh_coeffs"), pybind11::arg("sh_degree"), pybind11::arg("width"),
        pybind11::arg("height"), pybind11::arg("eps2d"), pybind11::arg("near_plane"), pybind11::arg("far_plane"),
        pybind11::arg("radii"), pybind11::arg("v_means2d"), pybind11::arg("v_conics"), pybind11::arg("v_depths"),
        pybind11::arg("v_colors"));
}
