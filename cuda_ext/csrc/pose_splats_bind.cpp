// Python binding for the pose_splats op (CPU only: on CUDA tensors the viewer's pose step runs the torch twin).
// Formulas: pose_splats.h.
#include <torch/extension.h>

#include "common.h"
#include "pose_splats.h"

namespace {

namespace ps = nerfhead::pose_splats;

at::Tensor pose_splats_forward(const at::Tensor& verts, const at::Tensor& tri, const at::Tensor& means,
                               const at::Tensor& local, const at::Tensor& rgb, const at::Tensor& opacities,
                               const c10::optional<at::Tensor>& pos, const c10::optional<at::Tensor>& code,
                               const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                               const c10::optional<at::Tensor>& gain, double limit_pos, double limit_rgb) {
  TORCH_CHECK(verts.dim() == 2 && verts.size(1) == 3, "pose_splats: verts must be [V, 3], got ", verts.sizes());
  const int64_t N = means.size(0), V = verts.size(0);
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "pose_splats: means must be [N, 3], got ", means.sizes());
  TORCH_CHECK(tri.dim() == 2 && tri.size(0) == N && tri.size(1) == 3 && tri.scalar_type() == at::kLong,
              "pose_splats: tri must be [N, 3] int64, got ", tri.sizes());
  TORCH_CHECK(local.dim() == 3 && local.size(0) == N && local.size(1) == 3 && local.size(2) == 3,
              "pose_splats: local must be [N, 3, 3], got ", local.sizes());
  TORCH_CHECK(rgb.dim() == 2 && rgb.size(0) == N && rgb.size(1) == 3, "pose_splats: rgb must be [N, 3]");
  TORCH_CHECK(opacities.dim() == 1 && opacities.size(0) == N, "pose_splats: opacities must be [N]");
  for (const at::Tensor* t : {&verts, &tri, &means, &local, &rgb, &opacities}) {
    NH_CHECK_CPU(*t);
    NH_CHECK_CONTIGUOUS(*t);
  }
  for (const at::Tensor* t : {&verts, &means, &local, &rgb, &opacities}) NH_CHECK_FLOAT(*t);
  TORCH_CHECK(N == 0 || V > 0, "pose_splats: Gaussians bound to an empty mesh");  // indices: checked in the pass
  at::Tensor p, c, w, b, g;
  if (pos.has_value() && pos->defined()) {
    TORCH_CHECK(code.has_value() && weight.has_value() && bias.has_value() && gain.has_value(),
                "pose_splats: the deformation head needs pos, code, weight, bias and gain");
    p = *pos;
    c = *code;
    w = *weight;
    b = *bias;
    g = *gain;
    TORCH_CHECK(p.dim() == 2 && p.size(0) == N, "pose_splats: pos must be [N, H], got ", p.sizes());
    const int64_t H = p.size(1);
    TORCH_CHECK(H <= ps::kMaxHidden, "pose_splats: hidden width ", H, " is over ", ps::kMaxHidden);
    TORCH_CHECK(c.dim() == 1 && c.size(0) == H, "pose_splats: code must be [H]");
    TORCH_CHECK(w.dim() == 2 && w.size(0) == 6 && w.size(1) == H, "pose_splats: weight must be [6, H]");
    TORCH_CHECK(b.dim() == 1 && b.size(0) == 6, "pose_splats: bias must be [6]");
    TORCH_CHECK(g.dim() == 1 && g.size(0) == N, "pose_splats: gain must be [N]");
    for (const at::Tensor* t : {&p, &c, &w, &b, &g}) {
      NH_CHECK_CPU(*t);
      NH_CHECK_CONTIGUOUS(*t);
      NH_CHECK_FLOAT(*t);
    }
  }
  TORCH_CHECK(limit_pos >= 0.0 && limit_rgb >= 0.0, "pose_splats: limits must be >= 0 (0: no squashing)");
  return ps::pose_splats_forward_cpu(verts, tri, means, local, rgb, opacities, p, c, w, b, g, limit_pos, limit_rgb);
}

}  // namespace

void init_pose_splats(pybind11::module_& m) {
  m.def("pose_splats_forward", &pose_splats_forward,
        "Gaussians bound to mesh triangles, posed and packed for viser (CPU): (verts [V,3], tri [N,3] int64, "
        "means [N,3], local [N,3,3], rgb [N,3], opacities [N], pos [N,H]?, code [H]?, weight [6,H]?, bias [6]?, "
        "gain [N]?, limit_pos, limit_rgb) -> [N, 8] int32",
        pybind11::arg("verts"), pybind11::arg("tri"), pybind11::arg("means"), pybind11::arg("local"),
        pybind11::arg("rgb"), pybind11::arg("opacities"), pybind11::arg("pos") = pybind11::none(),
        pybind11::arg("code") = pybind11::none(), pybind11::arg("weight") = pybind11::none(),
        pybind11::arg("bias") = pybind11::none(), pybind11::arg("gain") = pybind11::none(),
        pybind11::arg("limit_pos") = 0.0, pybind11::arg("limit_rgb") = 0.0);
}
