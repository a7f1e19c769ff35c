// pose_splats, C++ CPU kernel (OpenMP over Gaussians). Formulas: pose_splats.h.
#include <c10/util/Half.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "pose_splats.h"

namespace nerfhead {
namespace pose_splats {

namespace {

inline uint32_t half_bits(float x) { return static_cast<uint32_t>(c10::Half(x).x); }

inline uint32_t byte_of(float x) {
  float v = x * 255.0f;
  v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
  return static_cast<uint32_t>(static_cast<uint8_t>(v));
}

// tanh through expm1 (a few times faster than tanhf here, within a few ulp): tanh|x| = e / (e + 2), e = expm1(2|x|);
// |x| >= 9 gives 1 in float.
inline float fast_tanh(float x) {
  const float a = std::fabs(x);
  if (a >= 9.0f) return std::copysign(1.0f, x);
  const float e = std::expm1(2.0f * a);
  return std::copysign(e / (e + 2.0f), x);
}

inline float squash(float x, float limit) { return limit > 0.0f ? limit * fast_tanh(x / limit) : x; }

}  // namespace

at::Tensor pose_splats_forward_cpu(const at::Tensor& verts, const at::Tensor& tri, const at::Tensor& means,
                                   const at::Tensor& local, const at::Tensor& rgb, const at::Tensor& opacities,
                                   const at::Tensor& pos, const at::Tensor& code, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& gain, double limit_pos, double limit_rgb) {
  const int64_t N = means.size(0);
  auto out = at::empty({N, 8}, means.options().dtype(at::kInt));
  const float* V = verts.data_ptr<float>();
  const int64_t* T = tri.data_ptr<int64_t>();
  const float* MU = means.data_ptr<float>();
  const float* L = local.data_ptr<float>();
  const float* C = rgb.data_ptr<float>();
  const float* O = opacities.data_ptr<float>();
  const bool deform = pos.defined() && pos.numel() > 0;
  const int64_t H = deform ? pos.size(1) : 0;
  const float* P = deform ? pos.data_ptr<float>() : nullptr;
  const float* CODE = deform ? code.data_ptr<float>() : nullptr;
  const float* W = deform ? weight.data_ptr<float>() : nullptr;
  const float* B = deform ? bias.data_ptr<float>() : nullptr;
  const float* G = deform ? gain.data_ptr<float>() : nullptr;
  const float l0 = static_cast<float>(limit_pos), l1 = static_cast<float>(limit_rgb);
  uint32_t* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  const int64_t nv = verts.size(0);
  int bad = 0;  // a triangle index outside [0, V): checked here, in the pass, not by two reductions per pose

#pragma omp parallel for schedule(static) if (N > 4096) reduction(| : bad)
  for (int64_t i = 0; i < N; ++i) {
    const int64_t ia = T[3 * i], ib = T[3 * i + 1], ic = T[3 * i + 2];
    if (ia < 0 || ib < 0 || ic < 0 || ia >= nv || ib >= nv || ic >= nv) {
      bad = 1;
      continue;
    }
    float m[3] = {MU[3 * i], MU[3 * i + 1], MU[3 * i + 2]};
    float col[3] = {C[3 * i], C[3 * i + 1], C[3 * i + 2]};
    if (deform) {
      float act[kMaxHidden];
      const float* p = P + i * H;
#pragma omp simd
      for (int64_t h = 0; h < H; ++h) {
        const float a = p[h] + CODE[h];
        act[h] = a > 0.0f ? a : 0.0f;
      }
      float o[6];
      for (int j = 0; j < 6; ++j) {
        const float* w = W + j * H;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t h = 0; h < H; ++h) acc += w[h] * act[h];
        o[j] = acc;
      }
      for (int j = 0; j < 3; ++j) {
        m[j] += squash(o[j] + B[j], l0);
        col[j] += G[i] * squash(o[3 + j] + B[3 + j], l1);
      }
    }
    const float* va = V + 3 * ia;
    const float* vb = V + 3 * ib;
    const float* vc = V + 3 * ic;
    float e1[3], e2[3], cr[3], t[3], n[3], b[3];
    for (int j = 0; j < 3; ++j) {
      e1[j] = vb[j] - va[j];
      e2[j] = vc[j] - va[j];
    }
    const float len1 = std::sqrt(e1[0] * e1[0] + e1[1] * e1[1] + e1[2] * e1[2]);
    const float l1c = len1 > kFrameEps ? len1 : kFrameEps;
    for (int j = 0; j < 3; ++j) t[j] = e1[j] / l1c;
    cr[0] = e1[1] * e2[2] - e1[2] * e2[1];
    cr[1] = e1[2] * e2[0] - e1[0] * e2[2];
    cr[2] = e1[0] * e2[1] - e1[1] * e2[0];
    const float area2 = std::sqrt(cr[0] * cr[0] + cr[1] * cr[1] + cr[2] * cr[2]);
    const float a2c = area2 > kFrameEps ? area2 : kFrameEps;
    for (int j = 0; j < 3; ++j) n[j] = cr[j] / a2c;
    b[0] = n[1] * t[2] - n[2] * t[1];
    b[1] = n[2] * t[0] - n[0] * t[2];
    b[2] = n[0] * t[1] - n[1] * t[0];
    float k = 0.5f * (len1 + area2 / l1c);
    k = k > 1e-8f ? k : 1e-8f;
    // R = [t b n] as columns: R[r][c]
    const float R[3][3] = {{t[0], b[0], n[0]}, {t[1], b[1], n[1]}, {t[2], b[2], n[2]}};
    float centre[3];
    for (int r = 0; r < 3; ++r) {
      const float centroid = (va[r] + vb[r] + vc[r]) / 3.0f;
      centre[r] = centroid + (R[r][0] * (k * m[0]) + R[r][1] * (k * m[1]) + R[r][2] * (k * m[2]));
    }
    const float* Li = L + 9 * i;
    float M[3][3];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) M[r][c] = (R[r][0] * Li[c] + R[r][1] * Li[3 + c] + R[r][2] * Li[6 + c]) * k;
    float cov[6];
    const int rows[6] = {0, 0, 0, 1, 1, 2}, cols[6] = {0, 1, 2, 1, 2, 2};
    for (int q = 0; q < 6; ++q) {
      const float* x = M[rows[q]];
      const float* y = M[cols[q]];
      cov[q] = x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
    }
    uint32_t* d = dst + 8 * i;
    std::memcpy(d, centre, 3 * sizeof(float));
    d[3] = 0u;
    d[4] = half_bits(cov[0]) | (half_bits(cov[1]) << 16);
    d[5] = half_bits(cov[2]) | (half_bits(cov[3]) << 16);
    d[6] = half_bits(cov[4]) | (half_bits(cov[5]) << 16);
    float cc[3];
    for (int j = 0; j < 3; ++j) cc[j] = col[j] < 0.0f ? 0.0f : (col[j] > 1.0f ? 1.0f : col[j]);
    d[7] = byte_of(cc[0]) | (byte_of(cc[1]) << 8) | (byte_of(cc[2]) << 16) | (byte_of(O[i]) << 24);
  }
  TORCH_CHECK(!bad, "pose_splats: tri out of range");
  return out;
}

}  // namespace pose_splats
}  // namespace nerfhead
