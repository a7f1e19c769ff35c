// pose_splats: the viewer's pose step for Gaussians bound to a mesh, fused with viser's 32-byte packing.
//
// Per Gaussian i, with triangle (a, b, c) = tri[i] of the posed vertices (same formulas as the torch twin,
// nerfhead/ops/_torch/pose_splats.py, and nerfhead.splats.binding.triangle_frames):
//  - optional deformation head (the last two layers of nerfhead.fields.deformation.ExpressionDeformation):
//      h = relu(pos[i] + code); o = W h + bias; offset = l0 tanh(o[0:3] / l0), residual = l1 tanh(o[3:6] / l1)
//      (no tanh where a limit is 0); mean += offset, colour += gain[i] residual;
//  - triangle frame: e1 = v_b - v_a, e2 = v_c - v_a, t = e1 / max(|e1|, eps), n = (e1 x e2) / max(|e1 x e2|, eps),
//    b = n x t, R = [t b n] (columns), k = max(0.5 (|e1| + |e1 x e2| / max(|e1|, eps)), 1e-8),
//    centroid = (v_a + v_b + v_c) / 3;
//  - centre = centroid + R (k mean), M = k R L[i], covariance = M M^T;
//  - packed (viser's GaussianSplatHandle.buffer, 8 x uint32): centre 3 x float32, 0, covariance upper triangle
//    (xx, xy, xz, yy, yz, zz) 6 x float16 (round to nearest even), RGBA 4 x uint8 = trunc(255 clamp(x, 0, 1)).
// Gaussians are independent: OpenMP over Gaussians.
#pragma once

#include <ATen/ATen.h>

namespace nerfhead {
namespace pose_splats {

constexpr float kFrameEps = 1e-12f;  // binding._EPS
constexpr int64_t kMaxHidden = 256;  // widest hidden layer the fused deformation head takes

at::Tensor pose_splats_forward_cpu(const at::Tensor& verts, const at::Tensor& tri, const at::Tensor& means,
                                   const at::Tensor& local, const at::Tensor& rgb, const at::Tensor& opacities,
                                   const at::Tensor& pos, const at::Tensor& code, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& gain, double limit_pos, double limit_rgb);

}  // namespace pose_splats
}  // namespace nerfhead
