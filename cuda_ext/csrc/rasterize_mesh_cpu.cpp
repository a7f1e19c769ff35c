// rasterize_mesh, C++ CPU kernel: per-triangle bounding-box scan conversion into a depth buffer.
//
// Work is split into (image, band of rows) items run in parallel with OpenMP; each item owns its rows, scans
// all triangles in ascending id and keeps the strictly nearer depth, so the result is deterministic and equal
// to the (depth, id) minimum of rasterize_mesh.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>

#include "rasterize_mesh.h"

namespace {

void raster_band(const float* vs, const int32_t* faces, int64_t F, int64_t W, int64_t row0, int64_t row1, float near,
                 int32_t* ids, float* zbuf) {
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t y = row0; y < row1; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      ids[y * W + x] = -1;
      zbuf[y * W + x] = inf;
    }
  }
  const float band_lo = (float)row0 + 0.5f;  // centre of the first row
  const float band_hi = (float)row1 - 0.5f;  // centre of the last row
  for (int64_t f = 0; f < F; ++f) {
    // Cheap reject on the pixel ranges before the full setup (most head triangles cover no pixel centre).
    const int32_t i0 = faces[f * 3], i1 = faces[f * 3 + 1], i2 = faces[f * 3 + 2];
    const float y0 = vs[i0 * 3 + 1], y1 = vs[i1 * 3 + 1], y2 = vs[i2 * 3 + 1];
    const float ymin = std::min(y0, std::min(y1, y2));
    const float ymax = std::max(y0, std::max(y1, y2));
    if (!(ymax >= band_lo && ymin <= band_hi)) continue;
    const float x0 = vs[i0 * 3], x1 = vs[i1 * 3], x2 = vs[i2 * 3];
    int64_t xa, xb, ya, yb;
    rm_pixel_range(std::min(x0, std::min(x1, x2)), std::max(x0, std::max(x1, x2)), W, xa, xb);
    if (xb < xa) continue;
    rm_pixel_range(ymin, ymax, row1, ya, yb);
    ya = std::max(ya, row0);
    if (yb < ya) continue;
    RmTri t;
    if (!rm_setup(vs, faces, f, near, t)) continue;
    for (int64_t y = ya; y <= yb; ++y) {
      const float py = (float)y + 0.5f;
      for (int64_t x = xa; x <= xb; ++x) {
        float d;
        if (!rm_cover(t, (float)x + 0.5f, py, d)) continue;
        const int64_t p = y * W + x;
        if (d < zbuf[p]) {
          zbuf[p] = d;
          ids[p] = (int32_t)f;
        }
      }
    }
  }
  for (int64_t y = row0; y < row1; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      if (ids[y * W + x] < 0) zbuf[y * W + x] = 0.f;
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rasterize_mesh_forward_cpu(const at::Tensor& verts_screen, const at::Tensor& faces,
                                                              int64_t width, int64_t height, double near) {
  const int64_t B = verts_screen.size(0), V = verts_screen.size(1), F = faces.size(0);
  auto ids = at::empty({B, height, width}, verts_screen.options().dtype(at::kInt));
  auto zbuf = at::empty({B, height, width}, verts_screen.options().dtype(at::kFloat));
  if (B == 0 || height == 0 || width == 0) return {ids, zbuf};
  const float* vs = verts_screen.data_ptr<float>();
  const int32_t* fc = faces.data_ptr<int32_t>();
  int32_t* idp = ids.data_ptr<int32_t>();
  float* zp = zbuf.data_ptr<float>();
  // Enough bands per image to keep every thread busy when the batch is small; rows stay contiguous.
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t bands = std::min<int64_t>(height, std::max<int64_t>(1, (2 * threads + B - 1) / B));
  const int64_t rows = (height + bands - 1) / bands;
  const float nearf = (float)near;
  at::parallel_for(0, B * bands, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / bands, k = item % bands;
      const int64_t r0 = k * rows, r1 = std::min(height, r0 + rows);
      if (r0 >= r1) continue;
      raster_band(vs + b * V * 3, fc, F, width, r0, r1, nearf, idp + b * height * width, zp + b * height * width);
    }
  });
  return {ids, zbuf};
}
