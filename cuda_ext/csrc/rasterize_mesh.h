// rasterize_mesh: z-buffer visibility of screen-space triangles (which triangle covers each pixel).
//
// Input vertices are already projected: verts_screen [B, V, 3] = (u, v, z) with (u, v) continuous pixel
// coordinates (pixel (x, y) samples (x + 0.5, y + 0.5)) and z the camera-space depth. Outputs per pixel the id
// of the nearest covering triangle (-1 = background) and its depth (0 for background). Not differentiable:
// the Python side recomputes barycentrics from the ids so that gradients reach the vertices.
//
// Rules shared by the CPU kernel, the CUDA kernel and the torch twin (nerfhead/ops/_torch/rasterize_mesh.py):
//  - triangles with any vertex at z < near, or with zero screen area, are dropped (no clipping);
//  - both windings are drawn (no back-face culling);
//  - edge functions are evaluated with the edge's end points in a canonical (lexicographic) order, so the two
//    triangles sharing an edge get bitwise-opposite values there: no holes, no double cover; a pixel centre
//    exactly on an edge belongs to the triangle whose (oriented) edge direction passes rm_tie_owner;
//  - depth is 1 / (sum_i l_i / z_i) with l_i the screen-space barycentrics; the nearest depth wins and, at equal
//    depth, the smaller triangle id (the packed key (float bits of depth) << 32 | id, minimised).
#pragma once

#include <torch/types.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <tuple>

#if defined(__CUDACC__)
#define RM_HD __host__ __device__ __forceinline__
#else
#define RM_HD inline
#endif

// False for NaN and +-inf (not optimised away: the kernels are built without -ffinite-math-only).
RM_HD bool rm_finite(float v) { return fabsf(v) <= FLT_MAX; }

// Edge function of the edge a->b at p, computed with the end points in canonical order.
RM_HD float rm_edge(float ax, float ay, float bx, float by, float px, float py) {
  const bool swap = (ax > bx) || (ax == bx && ay > by);
  if (swap) {
    float t = ax;
    ax = bx;
    bx = t;
    t = ay;
    ay = by;
    by = t;
  }
  const float dx = bx - ax;
  const float dy = by - ay;
  const float qx = px - ax;
  const float qy = py - ay;
  const float m1 = dx * qy;
  const float m2 = dy * qx;
  const float w = m1 - m2;
  return swap ? -w : w;
}

// Tie rule for a pixel centre exactly on an edge with (positively oriented) direction (dx, dy): antisymmetric,
// so exactly one of the two triangles sharing the edge takes the pixel.
RM_HD bool rm_tie_owner(float dx, float dy) { return dy > 0.f || (dy == 0.f && dx > 0.f); }

// One triangle set up for scan conversion.
struct RmTri {
  float x[3], y[3], z[3];
  float area;  // signed doubled area in the input winding
  float s;     // +1 or -1: makes the area positive
};

// Loads triangle f of image b; returns false when it is dropped (near plane, zero area, non-finite).
RM_HD bool rm_setup(const float* vs, const int32_t* faces, int64_t f, float near, RmTri& t) {
  for (int k = 0; k < 3; ++k) {
    const int64_t vi = faces[f * 3 + k];
    t.x[k] = vs[vi * 3 + 0];
    t.y[k] = vs[vi * 3 + 1];
    t.z[k] = vs[vi * 3 + 2];
    if (!(t.z[k] >= near) || !rm_finite(t.x[k]) || !rm_finite(t.y[k]) || !rm_finite(t.z[k])) return false;
  }
  t.area = rm_edge(t.x[0], t.y[0], t.x[1], t.y[1], t.x[2], t.y[2]);
  if (!(t.area != 0.f) || !rm_finite(t.area)) return false;
  t.s = t.area > 0.f ? 1.f : -1.f;
  return true;
}

// Inclusive pixel range [lo, hi] whose centres (i + 0.5) fall in [a, b], clamped to [0, n - 1] (NaN-safe; the
// triangle is rejected later by rm_setup).
RM_HD void rm_pixel_range(float a, float b, int64_t n, int64_t& lo, int64_t& hi) {
  const float fa = ceilf(a - 0.5f);
  const float fb = floorf(b - 0.5f);
  lo = !(fa >= 0.f) ? 0 : (fa > (float)n ? n : (int64_t)fa);
  hi = fb < -1.f ? -1 : (!(fb <= (float)(n - 1)) ? n - 1 : (int64_t)fb);
}

// Coverage test of pixel centre (px, py); on success writes the depth there.
RM_HD bool rm_cover(const RmTri& t, float px, float py, float& depth) {
  const float w0 = rm_edge(t.x[1], t.y[1], t.x[2], t.y[2], px, py);
  const float w1 = rm_edge(t.x[2], t.y[2], t.x[0], t.y[0], px, py);
  const float w2 = rm_edge(t.x[0], t.y[0], t.x[1], t.y[1], px, py);
  const float e0 = t.s * w0, e1 = t.s * w1, e2 = t.s * w2;
  if (e0 < 0.f || e1 < 0.f || e2 < 0.f) return false;
  if (e0 == 0.f && !rm_tie_owner(t.s * (t.x[2] - t.x[1]), t.s * (t.y[2] - t.y[1]))) return false;
  if (e1 == 0.f && !rm_tie_owner(t.s * (t.x[0] - t.x[2]), t.s * (t.y[0] - t.y[2]))) return false;
  if (e2 == 0.f && !rm_tie_owner(t.s * (t.x[1] - t.x[0]), t.s * (t.y[1] - t.y[0]))) return false;
  const float l0 = w0 / t.area, l1 = w1 / t.area, l2 = w2 / t.area;
  const float a0 = l0 / t.z[0], a1 = l1 / t.z[1], a2 = l2 / t.z[2];
  const float inv = (a0 + a1) + a2;
  if (!(inv > 0.f)) return false;
  depth = 1.f / inv;
  return true;
}

std::tuple<at::Tensor, at::Tensor> rasterize_mesh_forward_cpu(const at::Tensor& verts_screen, const at::Tensor& faces,
                                                              int64_t width, int64_t height, double near);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> rasterize_mesh_forward_cuda(const at::Tensor& verts_screen, const at::Tensor& faces,
                                                               int64_t width, int64_t height, double near);
#endif
