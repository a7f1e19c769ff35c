// Occupancy-grid ray marching, C++ CPU kernel (OpenMP). Stepping rule: ray_march.h.
//
// One pass: rays are split into chunks of kChunk rays, scheduled dynamically (ray lengths vary a lot); each chunk
// marches its rays in order into its own buffers, then an exclusive scan over the per-ray counts gives every ray
// its place in the packed output and the chunks are copied there in parallel. (The CUDA kernel marches twice
// instead: count, scan, fill.)
#include <ATen/ATen.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__)
// Keep float arithmetic unfused so that the samples match the torch twin bit for bit on FMA-capable targets.
// (After the ATen includes, before ray_march.h: the stepping functions and their callers share these options.)
#pragma GCC optimize("fp-contract=off")
#endif
#include "ray_march.h"

namespace nerfhead {
namespace ray_march {
namespace {

constexpr int64_t kChunk = 64;

void check_rays(const at::Tensor& origins, const at::Tensor& dirs) {
  TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3, "ray_march: origins must be [R, 3]");
  TORCH_CHECK(dirs.sizes() == origins.sizes(), "ray_march: dirs must match origins");
  TORCH_CHECK(origins.scalar_type() == at::kFloat && dirs.scalar_type() == at::kFloat,
              "ray_march: origins and dirs must be float32");
  TORCH_CHECK(origins.is_contiguous() && dirs.is_contiguous(), "ray_march: origins and dirs must be contiguous");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_march_forward_cpu(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min, const at::Tensor& t_max,
    const at::Tensor& bits, const at::Tensor& aabb, int64_t res, int64_t n_cascades, double step_size,
    double cone_angle, double dt_max, int64_t max_samples) {
  check_rays(origins, dirs);
  const int64_t R = origins.size(0);
  TORCH_CHECK(t_min.numel() == R && t_max.numel() == R, "ray_march: t_min and t_max must be [R]");
  TORCH_CHECK(t_min.scalar_type() == at::kFloat && t_max.scalar_type() == at::kFloat && t_min.is_contiguous() &&
                  t_max.is_contiguous(),
              "ray_march: t_min and t_max must be contiguous float32");
  TORCH_CHECK(step_size > 0.0, "ray_march: step_size must be positive");
  const Grid g = make_grid(bits, aabb, res, n_cascades);
  const Step s{static_cast<float>(step_size), static_cast<float>(cone_angle), static_cast<float>(dt_max),
               static_cast<int>(std::min<int64_t>(max_samples, 1 << 30))};

  const float* o = origins.data_ptr<float>();
  const float* d = dirs.data_ptr<float>();
  const float* tn = t_min.data_ptr<float>();
  const float* tx = t_max.data_ptr<float>();
  auto opts = origins.options();
  at::Tensor t_resume = at::empty({R}, opts);
  at::Tensor packed = at::empty({R, 2}, opts.dtype(at::kLong));
  float* tr = t_resume.data_ptr<float>();
  int64_t* pk = packed.data_ptr<int64_t>();

  const int64_t n_chunks = (R + kChunk - 1) / kChunk;
  std::vector<std::vector<float>> buf0(n_chunks), buf1(n_chunks);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    std::vector<float>& b0 = buf0[ch];
    std::vector<float>& b1 = buf1[ch];
    const int64_t end = std::min(R, (ch + 1) * kChunk);
    auto sink = [&b0, &b1](int64_t, float t0, float t1) {
      b0.push_back(t0);
      b1.push_back(t1);
    };
    for (int64_t r = ch * kChunk; r < end; ++r) {
      pk[2 * r + 1] = march_ray(o + 3 * r, d + 3 * r, tn[r], tx[r], g, s, sink, tr + r);
    }
  }
  // Exclusive scan of the counts (serial: R additions).
  int64_t total = 0;
  std::vector<int64_t> chunk_start(n_chunks + 1, 0);
  for (int64_t r = 0; r < R; ++r) {
    if (r % kChunk == 0) chunk_start[r / kChunk] = total;
    pk[2 * r] = total;
    total += pk[2 * r + 1];
  }
  at::Tensor t_starts = at::empty({total}, opts);
  at::Tensor t_ends = at::empty({total}, opts);
  at::Tensor ray_indices = at::empty({total}, opts.dtype(at::kLong));
  float* ts = t_starts.data_ptr<float>();
  float* te = t_ends.data_ptr<float>();
  int64_t* ri = ray_indices.data_ptr<int64_t>();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    const int64_t off = chunk_start[ch];
    std::copy(buf0[ch].begin(), buf0[ch].end(), ts + off);
    std::copy(buf1[ch].begin(), buf1[ch].end(), te + off);
    const int64_t end = std::min(R, (ch + 1) * kChunk);
    for (int64_t r = ch * kChunk; r < end; ++r) std::fill(ri + pk[2 * r], ri + pk[2 * r] + pk[2 * r + 1], r);
  }
  return {packed, ray_indices, t_starts, t_ends, t_resume};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ray_aabb_intersect_cpu(const at::Tensor& origins, const at::Tensor& dirs,
                                                                      const at::Tensor& aabb) {
  check_rays(origins, dirs);
  const int64_t R = origins.size(0);
  auto box = aabb.detach().to(at::kCPU, at::kFloat).contiguous();
  TORCH_CHECK(box.numel() == 6, "ray_aabb_intersect: aabb must have 6 values");
  const float* b = box.data_ptr<float>();
  const float lo[3] = {b[0], b[1], b[2]};
  const float hi[3] = {b[3], b[4], b[5]};
  at::Tensor t0 = at::empty({R}, origins.options());
  at::Tensor t1 = at::empty({R}, origins.options());
  at::Tensor hit = at::empty({R}, origins.options().dtype(at::kBool));
  const float* o = origins.data_ptr<float>();
  const float* d = dirs.data_ptr<float>();
  float* p0 = t0.data_ptr<float>();
  float* p1 = t1.data_ptr<float>();
  bool* ph = hit.data_ptr<bool>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    ray_box(o + 3 * r, d + 3 * r, lo, hi, p0 + r, p1 + r);
    ph[r] = p1[r] >= p0[r] && p1[r] > 0.f;
  }
  return {t0, t1, hit};
}

}  // namespace ray_march
}  // namespace nerfhead
