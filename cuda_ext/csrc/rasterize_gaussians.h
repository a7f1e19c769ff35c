// rasterize_gaussians: front-to-back alpha compositing of projected 2D Gaussians (the pixel stage of 3DGS).
//
// Projection, SH and the depth/background modes stay in PyTorch (nerfhead/ops/_torch/rasterize_gaussians.py);
// this kernel takes the 2D Gaussians and composites them, forward and backward. On CUDA tensors nerfhead uses
// gsplat, so there is no .cu for this op.
//
// Rules shared with the torch twin (_rasterize_to_pixels) and gsplat:
//  - Gaussian g of camera c is drawn when both radii are > 0, on the pixels whose centres (x + 0.5, y + 0.5)
//    lie in its box |x + 0.5 - mean.x| <= radius.x (same for y), clamped to the image (rg_pixel_range);
//  - per pixel, Gaussians are taken in ascending depth (ties: ascending index);
//  - sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with d = mean2d - pixel and conic (a, b, c);
//    alpha = min(0.999, opacity exp(-sigma)); skipped when sigma < 0 or alpha < 1/255;
//  - the pixel stops (exclusive) at the first Gaussian that would bring its transmittance T to <= 1e-4;
//  - output colour = sum_i c_i alpha_i T_i, alpha = 1 - T_final; no background (added in PyTorch).
//
// Work: per camera, the visible Gaussians are sorted by depth and binned into 16x16 tiles; tiles run in
// parallel (OpenMP, dynamic). The backward pass walks each pixel's list back to front, recovering T by division
// as 3DGS does; each (tile, Gaussian) intersection writes its own gradient slot, reduced per Gaussian in a
// fixed order, so the result is deterministic whatever the thread count.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <tuple>

// Inclusive pixel range [lo, hi] whose centres i + 0.5 satisfy |i + 0.5 - m| <= r, clamped to [0, n - 1];
// empty when hi < lo. Same arithmetic as the twin's _pixel_boxes.
template <typename T>
inline void rg_pixel_range(T m, int32_t r, int64_t n, int64_t& lo, int64_t& hi) {
  const T a = std::ceil((m - (T)r) - (T)0.5);
  const T b = std::floor((m + (T)r) - (T)0.5);
  lo = a < (T)0 ? 0 : (a > (T)n ? n : (int64_t)a);
  hi = b < (T)-1 ? -1 : (b > (T)(n - 1) ? n - 1 : (int64_t)b);
}

// Forward. Inputs (one dtype, float32 or float64, contiguous): means2d [C,N,2], conics [C,N,3], colors [C,N,D],
// opacities [C,N], depths [C,N] (sort keys), radii [C,N,2] int32. Returns
// (render [C,H,W,D], alpha [C,H,W,1], t_final [C,H,W], last [C,H,W] int32 (index of the pixel's last
// contributing intersection, -1 = none), tile_offsets [C*TH*TW+1] int64, flat_ids [n_isect] int32).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_forward_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& depths, const at::Tensor& radii, int64_t width, int64_t height, int64_t tile_size);

// Backward: gradients of a loss w.r.t. means2d [C,N,2], conics [C,N,3], colors [C,N,D], opacities [C,N], given
// v_render [C,H,W,D] and v_alpha [C,H,W,1] and the forward's t_final, last, tile_offsets, flat_ids.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_backward_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& radii, const at::Tensor& t_final, const at::Tensor& last, const at::Tensor& tile_offsets,
    const at::Tensor& flat_ids, const at::Tensor& v_render, const at::Tensor& v_alpha, int64_t width, int64_t height,
    int64_t tile_size);

// Per-Gaussian stage (rasterize_gaussians_project_cpu.cpp): EWA projection into C cameras and, when sh_degree >= 0,
// SH colours (+0.5, clamped at 0). means [N,3], quats [N,4] wxyz, scales [N,3], opacities [N], viewmats [C,4,4],
// Ks [C,3,3], sh_coeffs [N,K,3] (unused when sh_degree < 0). Returns (means2d [C,N,2], conics [C,N,3],
// depths [C,N], radii [C,N,2] int32 (0 = culled), colors [C,N,3] or an empty tensor).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_project_forward_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& opacities,
    const at::Tensor& viewmats, const at::Tensor& Ks, const at::Tensor& sh_coeffs, int64_t sh_degree, int64_t width,
    int64_t height, double eps2d, double near_plane, double far_plane);

// Backward of the per-Gaussian stage: gradients for means, quats, scales and sh_coeffs (empty when sh_degree < 0)
// from those of means2d, conics, depths and colors. Culled entries (radii 0) receive none; viewmats and Ks none.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_project_backward_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& viewmats,
    const at::Tensor& Ks, const at::Tensor& sh_coeffs, int64_t sh_degree, int64_t width, int64_t height, double eps2d,
    double near_plane, double far_plane, const at::Tensor& radii, const at::Tensor& v_means2d,
    const at::Tensor& v_conics, const at::Tensor& v_depths, const at::Tensor& v_colors);
