// rasterize_gaussians, C++ CPU kernel for the per-Gaussian stage: EWA projection into C cameras and SH colours,
// forward and analytic backward. The same arithmetic as _project_gaussians / _shade in
// nerfhead/ops/_torch/rasterize_gaussians.py, fused into one pass per Gaussian (OpenMP over Gaussians, so the
// backward accumulates over cameras without races).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "rasterize_gaussians.h"

namespace {

// Below this many (camera, Gaussian) pairs the loops run on the calling thread (a fork/join costs more).
constexpr int64_t kParallelMin = 1 << 17;

constexpr double kSH[] = {0.28209479177387814, 0.4886025119029199,  1.0925484305920792, -1.0925484305920792,
                          0.31539156525252005, -1.0925484305920792, 0.5462742152960396, -0.5900435899266435,
                          2.890611442640554,   -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
                          1.445305721320277,   -0.5900435899266435};
// kSH[0] = C0, kSH[1] = C1, kSH[2..6] = C2[0..4], kSH[7..13] = C3[0..6] (3DGS / gsplat constants).

// SH bases Y[0..nb) at unit direction (x, y, z), 3DGS order; with grad != nullptr also dY/d(x, y, z).
template <typename T>
void sh_bases(int nb, T x, T y, T z, T* Y, T (*grad)[3]) {
  auto C = [](int i) { return (T)kSH[i]; };
  auto put = [&](int k, T v, T gx, T gy, T gz) {
    Y[k] = v;
    if (grad) {
      grad[k][0] = gx;
      grad[k][1] = gy;
      grad[k][2] = gz;
    }
  };
  put(0, C(0), 0, 0, 0);
  if (nb <= 1) return;
  put(1, -C(1) * y, 0, -C(1), 0);
  put(2, C(1) * z, 0, 0, C(1));
  put(3, -C(1) * x, -C(1), 0, 0);
  if (nb <= 4) return;
  const T xx = x * x, yy = y * y, zz = z * z;
  put(4, C(2) * x * y, C(2) * y, C(2) * x, 0);
  put(5, C(3) * y * z, 0, C(3) * z, C(3) * y);
  put(6, C(4) * (T(2) * zz - xx - yy), -T(2) * C(4) * x, -T(2) * C(4) * y, T(4) * C(4) * z);
  put(7, C(5) * x * z, C(5) * z, 0, C(5) * x);
  put(8, C(6) * (xx - yy), T(2) * C(6) * x, -T(2) * C(6) * y, 0);
  if (nb <= 9) return;
  put(9, C(7) * y * (T(3) * xx - yy), T(6) * C(7) * x * y, C(7) * (T(3) * xx - T(3) * yy), 0);
  put(10, C(8) * x * y * z, C(8) * y * z, C(8) * x * z, C(8) * x * y);
  put(11, C(9) * y * (T(4) * zz - xx - yy), -T(2) * C(9) * x * y, C(9) * (T(4) * zz - xx - T(3) * yy),
      T(8) * C(9) * y * z);
  put(12, C(10) * z * (T(2) * zz - T(3) * xx - T(3) * yy), -T(6) * C(10) * x * z, -T(6) * C(10) * y * z,
      C(10) * (T(6) * zz - T(3) * xx - T(3) * yy));
  put(13, C(11) * x * (T(4) * zz - xx - yy), C(11) * (T(4) * zz - T(3) * xx - yy), -T(2) * C(11) * x * y,
      T(8) * C(11) * x * z);
  put(14, C(12) * z * (xx - yy), T(2) * C(12) * x * z, -T(2) * C(12) * y * z, C(12) * (xx - yy));
  put(15, C(13) * x * (xx - T(3) * yy), C(13) * (T(3) * xx - T(3) * yy), -T(6) * C(13) * x * y, 0);
}

// Rotation from a wxyz quaternion (normalised here), as the twin's _quat_to_rotmat.
template <typename T>
void quat_to_rotmat(const T* q, T* qn, T R[3][3], T& norm) {
  norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const T inv = T(1) / std::max(norm, T(1e-12));
  for (int i = 0; i < 4; ++i) qn[i] = q[i] * inv;
  const T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  R[0][0] = 1 - 2 * (y * y + z * z);
  R[0][1] = 2 * (x * y - w * z);
  R[0][2] = 2 * (x * z + w * y);
  R[1][0] = 2 * (x * y + w * z);
  R[1][1] = 1 - 2 * (x * x + z * z);
  R[1][2] = 2 * (y * z - w * x);
  R[2][0] = 2 * (x * z - w * y);
  R[2][1] = 2 * (y * z + w * x);
  R[2][2] = 1 - 2 * (x * x + y * y);
}

// Everything the projection of one Gaussian into one camera computes.
template <typename T>
struct Proj {
  T mc[3], A[3][3], u, v, uc, vc, s0, s1, r0[3], r1[3], c00, c11, c01, det;
  bool u_in, v_in, valid;
};

template <typename T>
void project_one(const T* m, const T M[3][3], const T* vm, const T* K, int64_t W, int64_t H, T eps2d, T near, T far,
                 Proj<T>& p) {
  for (int i = 0; i < 3; ++i) {
    p.mc[i] = vm[4 * i] * m[0] + vm[4 * i + 1] * m[1] + vm[4 * i + 2] * m[2] + vm[4 * i + 3];
    for (int j = 0; j < 3; ++j) p.A[i][j] = vm[4 * i] * M[0][j] + vm[4 * i + 1] * M[1][j] + vm[4 * i + 2] * M[2][j];
  }
  const bool in_depth = p.mc[2] >= near && p.mc[2] <= far;
  const T tz = in_depth ? p.mc[2] : T(1);
  const T fx = K[0], fy = K[4], cx = K[2], cy = K[5];
  p.u = p.mc[0] / tz;
  p.v = p.mc[1] / tz;
  const T tan_x = T(0.5) * (T)W / fx, tan_y = T(0.5) * (T)H / fy;
  const T ulo = -(cx / fx + T(0.3) * tan_x), uhi = ((T)W - cx) / fx + T(0.3) * tan_x;
  const T vlo = -(cy / fy + T(0.3) * tan_y), vhi = ((T)H - cy) / fy + T(0.3) * tan_y;
  p.u_in = p.u >= ulo && p.u <= uhi;
  p.v_in = p.v >= vlo && p.v <= vhi;
  p.uc = std::min(std::max(p.u, ulo), uhi);
  p.vc = std::min(std::max(p.v, vlo), vhi);
  p.s0 = fx / tz;
  p.s1 = fy / tz;
  for (int j = 0; j < 3; ++j) {
    p.r0[j] = p.s0 * (p.A[0][j] - p.uc * p.A[2][j]);
    p.r1[j] = p.s1 * (p.A[1][j] - p.vc * p.A[2][j]);
  }
  p.c00 = p.r0[0] * p.r0[0] + p.r0[1] * p.r0[1] + p.r0[2] * p.r0[2] + eps2d;
  p.c11 = p.r1[0] * p.r1[0] + p.r1[1] * p.r1[1] + p.r1[2] * p.r1[2] + eps2d;
  p.c01 = p.r0[0] * p.r1[0] + p.r0[1] * p.r1[1] + p.r0[2] * p.r1[2];
  p.det = p.c00 * p.c11 - p.c01 * p.c01;
  p.valid = in_depth && p.det > T(0);
  if (!p.valid) p.det = T(1);
}

// Camera centre -R^T t of a world-to-camera matrix.
template <typename T>
void camera_centre(const T* vm, T* cam) {
  for (int j = 0; j < 3; ++j) cam[j] = -(vm[j] * vm[3] + vm[4 + j] * vm[7] + vm[8 + j] * vm[11]);
}

template <typename T>
void forward_impl(const T* means, const T* quats, const T* scales, const T* opac, const T* vms, const T* Ks,
                  const T* sh, int64_t K_sh, int nb, int64_t C, int64_t N, int64_t W, int64_t H, T eps2d, T near, T far,
                  T* m2, T* con, T* dep, int32_t* rad, T* col) {
  const T amin = T(1) / T(255);
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads()) if (C * N >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    T qn[4], R[3][3], M[3][3], norm, Y[16];
    quat_to_rotmat(quats + 4 * n, qn, R, norm);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) M[i][j] = R[i][j] * scales[3 * n + j];
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = c * N + n;
      const T* vm = vms + 16 * c;
      const T* K = Ks + 9 * c;
      Proj<T> p;
      project_one(means + 3 * n, M, vm, K, W, H, eps2d, near, far, p);
      con[3 * i] = p.c11 / p.det;
      con[3 * i + 1] = -p.c01 / p.det;
      con[3 * i + 2] = p.c00 / p.det;
      m2[2 * i] = K[0] * p.u + K[2];
      m2[2 * i + 1] = K[4] * p.v + K[5];
      dep[i] = p.mc[2];
      // Opacity-aware box (gsplat): extend = min(3.33, sqrt(2 log(o / (1/255)))) standard deviations.
      bool ok = p.valid && opac[n] >= amin;
      const T o = std::max(opac[n], amin);
      const T extend = std::min(std::sqrt(T(2) * std::log(o / amin)), T(3.33));
      const T rx = std::ceil(extend * std::sqrt(std::max(p.c00, T(0))));
      const T ry = std::ceil(extend * std::sqrt(std::max(p.c11, T(0))));
      const T mx = m2[2 * i], my = m2[2 * i + 1];
      ok = ok && mx + rx > 0 && mx - rx < (T)W && my + ry > 0 && my - ry < (T)H;
      ok = ok && std::isfinite(mx) && std::isfinite(my) && rx > 0 && ry > 0;
      rad[2 * i] = ok ? (int32_t)rx : 0;
      rad[2 * i + 1] = ok ? (int32_t)ry : 0;
      if (nb > 0) {
        T cam[3], d[3];
        camera_centre(vm, cam);
        for (int j = 0; j < 3; ++j) d[j] = means[3 * n + j] - cam[j];
        const T len = std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), T(1e-12));
        sh_bases<T>(nb, d[0] / len, d[1] / len, d[2] / len, Y, nullptr);
        for (int ch = 0; ch < 3; ++ch) {
          T acc = 0;
          for (int k = 0; k < nb; ++k) acc += Y[k] * sh[(n * K_sh + k) * 3 + ch];
          col[3 * i + ch] = std::max(acc + T(0.5), T(0));
        }
      }
    }
  }
}

template <typename T>
void backward_impl(const T* means, const T* quats, const T* scales, const T* vms, const T* Ks, const T* sh,
                   int64_t K_sh, int nb, int64_t C, int64_t N, int64_t W, int64_t H, T eps2d, T near, T far,
                   const int32_t* rad, const T* v_m2, const T* v_con, const T* v_dep, const T* v_col, T* g_means,
                   T* g_quats, T* g_scales, T* g_sh) {
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads()) if (C * N >= kParallelMin / 4)
  for (int64_t n = 0; n < N; ++n) {
    T qn[4], R[3][3], M[3][3], norm, Y[16], dY[16][3];
    quat_to_rotmat(quats + 4 * n, qn, R, norm);
    const T* s = scales + 3 * n;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) M[i][j] = R[i][j] * s[j];
    T gM[3][3] = {}, gm[3] = {};
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = c * N + n;
      if (rad[2 * i] <= 0 || rad[2 * i + 1] <= 0) continue;  // culled: not drawn, no gradient
      const T* vm = vms + 16 * c;
      const T* K = Ks + 9 * c;
      Proj<T> p;
      project_one(means + 3 * n, M, vm, K, W, H, eps2d, near, far, p);
      const T tz = p.mc[2], det = p.det;
      // conic = (c11, -c01, c00) / det
      const T va = v_con[3 * i], vb = v_con[3 * i + 1], vc = v_con[3 * i + 2];
      const T v_det = -(va * p.c11 - vb * p.c01 + vc * p.c00) / (det * det);
      const T v00 = vc / det + v_det * p.c11;
      const T v11 = va / det + v_det * p.c00;
      const T v01 = -vb / det - T(2) * v_det * p.c01;
      T vr0[3], vr1[3];
      for (int j = 0; j < 3; ++j) {
        vr0[j] = T(2) * v00 * p.r0[j] + v01 * p.r1[j];
        vr1[j] = T(2) * v11 * p.r1[j] + v01 * p.r0[j];
      }
      // r0 = s0 (A0 - uc A2), r1 = s1 (A1 - vc A2)
      T gA[3][3], v_s0 = 0, v_s1 = 0, v_uc = 0, v_vc = 0;
      for (int j = 0; j < 3; ++j) {
        gA[0][j] = p.s0 * vr0[j];
        gA[1][j] = p.s1 * vr1[j];
        gA[2][j] = -p.s0 * p.uc * vr0[j] - p.s1 * p.vc * vr1[j];
        v_s0 += vr0[j] * (p.A[0][j] - p.uc * p.A[2][j]);
        v_s1 += vr1[j] * (p.A[1][j] - p.vc * p.A[2][j]);
        v_uc -= p.s0 * vr0[j] * p.A[2][j];
        v_vc -= p.s1 * vr1[j] * p.A[2][j];
      }
      T v_u = K[0] * v_m2[2 * i] + (p.u_in ? v_uc : T(0));
      T v_v = K[4] * v_m2[2 * i + 1] + (p.v_in ? v_vc : T(0));
      T g_mc[3];
      g_mc[0] = v_u / tz;
      g_mc[1] = v_v / tz;
      g_mc[2] = v_dep[i] - (v_u * p.u + v_v * p.v) / tz - (v_s0 * K[0] + v_s1 * K[4]) / (tz * tz);
      for (int j = 0; j < 3; ++j) {
        gm[j] += vm[j] * g_mc[0] + vm[4 + j] * g_mc[1] + vm[8 + j] * g_mc[2];  // W^T g_mc
        for (int k = 0; k < 3; ++k) gM[j][k] += vm[j] * gA[0][k] + vm[4 + j] * gA[1][k] + vm[8 + j] * gA[2][k];
      }
      if (nb > 0) {
        T cam[3], d[3], u[3], gu[3] = {0, 0, 0};
        camera_centre(vm, cam);
        for (int j = 0; j < 3; ++j) d[j] = means[3 * n + j] - cam[j];
        const T len = std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), T(1e-12));
        for (int j = 0; j < 3; ++j) u[j] = d[j] / len;
        sh_bases<T>(nb, u[0], u[1], u[2], Y, dY);
        for (int ch = 0; ch < 3; ++ch) {
          T acc = 0;
          for (int k = 0; k < nb; ++k) acc += Y[k] * sh[(n * K_sh + k) * 3 + ch];
          if (acc + T(0.5) < T(0)) continue;  // clamped at 0
          const T g = v_col[3 * i + ch];
          for (int k = 0; k < nb; ++k) {
            g_sh[(n * K_sh + k) * 3 + ch] += Y[k] * g;
            const T gy = sh[(n * K_sh + k) * 3 + ch] * g;
            for (int j = 0; j < 3; ++j) gu[j] += gy * dY[k][j];
          }
        }
        const T ug = u[0] * gu[0] + u[1] * gu[1] + u[2] * gu[2];
        for (int j = 0; j < 3; ++j) gm[j] += (gu[j] - u[j] * ug) / len;
      }
    }
    for (int j = 0; j < 3; ++j) g_means[3 * n + j] = gm[j];
    // M = R diag(s)
    T gR[3][3];
    for (int j = 0; j < 3; ++j) {
      g_scales[3 * n + j] = gM[0][j] * R[0][j] + gM[1][j] * R[1][j] + gM[2][j] * R[2][j];
      for (int i = 0; i < 3; ++i) gR[i][j] = gM[i][j] * s[j];
    }
    const T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
    T gq[4];
    gq[0] = 2 * (-z * gR[0][1] + y * gR[0][2] + z * gR[1][0] - x * gR[1][2] - y * gR[2][0] + x * gR[2][1]);
    gq[1] = 2 * (y * gR[0][1] + z * gR[0][2] + y * gR[1][0] - 2 * x * gR[1][1] - w * gR[1][2] + z * gR[2][0] +
                 w * gR[2][1] - 2 * x * gR[2][2]);
    gq[2] = 2 * (-2 * y * gR[0][0] + x * gR[0][1] + w * gR[0][2] + x * gR[1][0] + z * gR[1][2] - w * gR[2][0] +
                 z * gR[2][1] - 2 * y * gR[2][2]);
    gq[3] = 2 * (-2 * z * gR[0][0] - w * gR[0][1] + x * gR[0][2] + w * gR[1][0] - 2 * z * gR[1][1] + y * gR[1][2] +
                 x * gR[2][0] + y * gR[2][1]);
    const T dot = qn[0] * gq[0] + qn[1] * gq[1] + qn[2] * gq[2] + qn[3] * gq[3];
    const T inv = T(1) / std::max(norm, T(1e-12));
    for (int k = 0; k < 4; ++k) g_quats[4 * n + k] = (gq[k] - qn[k] * dot) * inv;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_project_forward_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& opacities,
    const at::Tensor& viewmats, const at::Tensor& Ks, const at::Tensor& sh_coeffs, int64_t sh_degree, int64_t width,
    int64_t height, double eps2d, double near_plane, double far_plane) {
  const int64_t N = means.size(0), C = viewmats.size(0);
  const int nb = sh_degree < 0 ? 0 : (int)((sh_degree + 1) * (sh_degree + 1));
  auto opt = means.options();
  at::Tensor m2 = at::empty({C, N, 2}, opt), con = at::empty({C, N, 3}, opt), dep = at::empty({C, N}, opt);
  at::Tensor rad = at::empty({C, N, 2}, opt.dtype(at::kInt));
  at::Tensor col = nb > 0 ? at::empty({C, N, 3}, opt) : at::empty({0}, opt);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "rasterize_gaussians_project_forward_cpu", [&] {
    forward_impl<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
                           opacities.data_ptr<scalar_t>(), viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(),
                           nb > 0 ? sh_coeffs.data_ptr<scalar_t>() : nullptr, nb > 0 ? sh_coeffs.size(1) : 0, nb, C, N,
                           width, height, (scalar_t)eps2d, (scalar_t)near_plane, (scalar_t)far_plane,
                           m2.data_ptr<scalar_t>(), con.data_ptr<scalar_t>(), dep.data_ptr<scalar_t>(),
                           rad.data_ptr<int32_t>(), nb > 0 ? col.data_ptr<scalar_t>() : nullptr);
  });
  return {m2, con, dep, rad, col};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_project_backward_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& viewmats,
    const at::Tensor& Ks, const at::Tensor& sh_coeffs, int64_t sh_degree, int64_t width, int64_t height, double eps2d,
    double near_plane, double far_plane, const at::Tensor& radii, const at::Tensor& v_means2d,
    const at::Tensor& v_conics, const at::Tensor& v_depths, const at::Tensor& v_colors) {
  const int64_t N = means.size(0), C = viewmats.size(0);
  const int nb = sh_degree < 0 ? 0 : (int)((sh_degree + 1) * (sh_degree + 1));
  at::Tensor g_means = at::empty_like(means), g_quats = at::empty_like(quats), g_scales = at::empty_like(scales);
  at::Tensor g_sh = nb > 0 ? at::zeros_like(sh_coeffs) : at::empty({0}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "rasterize_gaussians_project_backward_cpu", [&] {
    backward_impl<scalar_t>(
        means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
        viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(), nb > 0 ? sh_coeffs.data_ptr<scalar_t>() : nullptr,
        nb > 0 ? sh_coeffs.size(1) : 0, nb, C, N, width, height, (scalar_t)eps2d, (scalar_t)near_plane,
        (scalar_t)far_plane, radii.data_ptr<int32_t>(), v_means2d.data_ptr<scalar_t>(), v_conics.data_ptr<scalar_t>(),
        v_depths.data_ptr<scalar_t>(), nb > 0 ? v_colors.data_ptr<scalar_t>() : nullptr, g_means.data_ptr<scalar_t>(),
        g_quats.data_ptr<scalar_t>(), g_scales.data_ptr<scalar_t>(), nb > 0 ? g_sh.data_ptr<scalar_t>() : nullptr);
  });
  return {g_means, g_quats, g_scales, g_sh};
}
