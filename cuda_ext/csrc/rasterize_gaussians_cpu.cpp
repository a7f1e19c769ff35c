// rasterize_gaussians, C++ CPU kernel (OpenMP + SIMD): tile binning, forward compositing and its backward.
// The rules are in rasterize_gaussians.h.
//
// Layout of the work: every Gaussian is prepared once per call (pixel box, conic, alpha cut-off, colour: one
// record); per camera the visible ones are sorted by depth and binned into tiles; each tile is run by one thread
// (dynamic schedule), Gaussian after Gaussian in depth order, over the rows of its box and, within a row, over
// blocks of 4 pixels held in one SSE register (GCC/Clang vector extensions, baseline x86-64). Per-pixel state
// lives in small per-thread arrays. float64 runs the same code with one scalar lane (for gradient checks).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "rasterize_gaussians.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

constexpr int kMaxChannels = 4;  // the kernel composites 1..4 channels; the Python side chunks wider inputs
constexpr int32_t kMaxLanes = 4;

template <typename T>
struct Rule {
  static constexpr T alpha_min = T(1) / T(255);
  static constexpr T alpha_max = T(0.999);
  static constexpr T t_min = T(1e-4);
};

// Flushes subnormals to zero on this thread while alive (x86 MXCSR FTZ + DAZ): far from a Gaussian's centre
// o * exp(-sigma) and its products are subnormal on lanes that are masked out anyway.
class FlushDenormals {
 public:
#if defined(__SSE__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

struct Grid {
  int64_t C, N, W, H, ts, TW, TH, TT;
  Grid(int64_t C_, int64_t N_, int64_t W_, int64_t H_, int64_t ts_)
      : C(C_), N(N_), W(W_), H(H_), ts(ts_), TW((W_ + ts_ - 1) / ts_), TH((H_ + ts_ - 1) / ts_), TT(TW * TH) {}
};

// floor / ceil to int without libm calls, for |v| < 2^30 (callers clamp first).
template <typename T>
inline int32_t ifloor(T v) {
  const int32_t i = (int32_t)v;
  return i - (v < (T)i ? 1 : 0);
}
template <typename T>
inline int32_t iceil(T v) {
  const int32_t i = (int32_t)v;
  return i + (v > (T)i ? 1 : 0);
}

constexpr int64_t kMaxImageSide = 32767;  // pixel boxes are stored as int16
constexpr int64_t kPrefetch = 8;          // intersections ahead whose Gaussian record is prefetched
// Below this many per-Gaussian items a loop runs on the calling thread: a fork/join costs more than the work,
// and much more on a machine whose cores are busy with other processes.
constexpr int64_t kParallelMin = 1 << 17;

// One projected Gaussian, prepared once per call: one cache line for float.
template <typename T>
struct alignas(64) Prep {
  T mx, my, a, b, c, o;
  T col[kMaxChannels];
  T inv_a, bac, cut2a;     // 1 / a, b^2 - a c, 2 a cut; cut = log(255 o) + 1 (alpha >= 1/255 needs sigma <= cut - 1)
  int16_t x0, x1, y0, y1;  // inclusive pixel box clamped to the image; x1 < x0 when not drawn
  bool trim;               // whether row_span may narrow rows (a > 0 and finite numbers)

  // Narrows [xa, xb] to the pixels of the row at offset dy (= my - row centre) where sigma <= cut, plus one pixel
  // each side; false when none. Outside that span alpha < 1/255, so trimming never changes a result.
  bool row_span(T dy, int32_t& xa, int32_t& xb) const {
    if (!trim) return true;
    const T disc = bac * dy * dy + cut2a;  // discriminant of 0.5 a dx^2 + b dy dx + 0.5 c dy^2 - cut = 0 (times 2a)
    if (disc < T(0)) return false;
    const T r = std::sqrt(disc);
    const T lim = T(1 << 29);
    const T lo = std::max(-lim, std::min(lim, mx - (r - b * dy) * inv_a - T(0.5)));
    const T hi = std::max(-lim, std::min(lim, mx + (r + b * dy) * inv_a - T(0.5)));
    xa = std::max(xa, ifloor(lo));
    xb = std::min(xb, iceil(hi));
    return xa <= xb;
  }
};

template <typename T, int D>
void prepare(const T* m2, const T* con, const T* col, const T* op, const int32_t* rad, const Grid& G,
             std::vector<Prep<T>>& out) {
  out.resize(G.C * G.N);
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads()) if (G.C * G.N >= kParallelMin)
  for (int64_t i = 0; i < G.C * G.N; ++i) {
    Prep<T>& p = out[i];
    p.mx = m2[2 * i];
    p.my = m2[2 * i + 1];
    p.a = con[3 * i];
    p.b = con[3 * i + 1];
    p.c = con[3 * i + 2];
    p.o = op[i];
    for (int d = 0; d < kMaxChannels; ++d) p.col[d] = d < D ? col[i * D + d] : T(0);
    int64_t x0 = 0, x1 = -1, y0 = 0, y1 = -1;
    if (rad[2 * i] > 0 && rad[2 * i + 1] > 0 && std::isfinite(p.mx) && std::isfinite(p.my)) {
      rg_pixel_range<T>(p.mx, rad[2 * i], G.W, x0, x1);
      rg_pixel_range<T>(p.my, rad[2 * i + 1], G.H, y0, y1);
    }
    if (y1 < y0) x1 = x0 - 1;
    p.x0 = (int16_t)x0;
    p.x1 = (int16_t)x1;
    p.y0 = (int16_t)y0;
    p.y1 = (int16_t)y1;
    const T cut = std::log(T(255) * p.o) + T(1);
    p.trim = p.a > T(0) && std::isfinite(cut) && std::isfinite(p.a) && std::isfinite(p.b) && std::isfinite(p.c);
    p.inv_a = T(1) / p.a;
    p.bac = p.b * p.b - p.a * p.c;
    p.cut2a = T(2) * p.a * cut;
  }
}

// Per camera: drawn Gaussians sorted by depth (stable), binned into tiles. Fills offsets [C*TT + 1] and ids.
template <typename T>
void bin_gaussians(const std::vector<Prep<T>>& prep, const T* depths, const Grid& G, std::vector<int64_t>& offsets,
                   std::vector<int32_t>& ids) {
  std::vector<std::vector<int32_t>> cam_ids(G.C);
  std::vector<std::vector<int64_t>> cam_counts(G.C);
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads()) if (G.C > 1)
  for (int64_t c = 0; c < G.C; ++c) {
    const Prep<T>* pc = prep.data() + c * G.N;
    const T* dc = depths + c * G.N;
    std::vector<int32_t> order;
    for (int64_t g = 0; g < G.N; ++g) {
      if (pc[g].x1 >= pc[g].x0 && dc[g] == dc[g]) order.push_back((int32_t)g);  // NaN depths cannot be ordered
    }
    std::stable_sort(order.begin(), order.end(), [dc](int32_t a, int32_t b) { return dc[a] < dc[b]; });
    std::vector<int64_t>& cnt = cam_counts[c];
    cnt.assign(G.TT + 1, 0);
    for (int32_t g : order) {
      const Prep<T>& p = pc[g];
      for (int64_t ty = p.y0 / G.ts; ty <= p.y1 / G.ts; ++ty)
        for (int64_t tx = p.x0 / G.ts; tx <= p.x1 / G.ts; ++tx) ++cnt[ty * G.TW + tx + 1];
    }
    for (int64_t t = 0; t < G.TT; ++t) cnt[t + 1] += cnt[t];
    std::vector<int64_t> pos(cnt.begin(), cnt.end() - 1);
    std::vector<int32_t>& out = cam_ids[c];
    out.resize(cnt[G.TT]);
    for (int32_t g : order) {
      const Prep<T>& p = pc[g];
      for (int64_t ty = p.y0 / G.ts; ty <= p.y1 / G.ts; ++ty)
        for (int64_t tx = p.x0 / G.ts; tx <= p.x1 / G.ts; ++tx) out[pos[ty * G.TW + tx]++] = g;
    }
  }
  offsets.assign(G.C * G.TT + 1, 0);
  int64_t base = 0;
  for (int64_t c = 0; c < G.C; ++c) {
    for (int64_t t = 0; t <= G.TT; ++t) offsets[c * G.TT + t] = base + cam_counts[c][t];
    base += cam_counts[c][G.TT];
  }
  ids.resize(base);
  for (int64_t c = 0; c < G.C; ++c) std::copy(cam_ids[c].begin(), cam_ids[c].end(), ids.begin() + offsets[c * G.TT]);
}

// Pixel lanes. Pack<float> holds 4 pixels in one SSE register; Pack<double> is one scalar lane. The per-lane
// arithmetic is the twin's, except exp: float uses Cephes' expf (range reduction to [-ln2/2, ln2/2], degree-6
// polynomial, ~1 ulp) so that it runs in SIMD registers.
typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));

template <typename T>
struct Pack {
  using V = T;
  using M = bool;
  using I = int32_t;
  static constexpr int32_t n = 1;
  static V splat(T c) { return c; }
  static I spliti(int32_t c) { return c; }
  static V iota(int32_t x0) { return (T)x0; }
  static I iotai(int32_t x0) { return x0; }
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static I loadi(const int32_t* p) { return *p; }
  static void storei(int32_t* p, I v) { *p = v; }
  static V sel(M m, V a, V b) { return m ? a : b; }
  static I seli(M m, I a, I b) { return m ? a : b; }
  static M andnot(M a, M b) { return a && !b; }
  static T hsum(V v) { return v; }
  static int32_t count(M m) { return m ? 1 : 0; }
  static bool any(M m) { return m; }
  static V exp_neg(V s) { return std::exp(-s); }
};

template <>
struct Pack<float> {
  using V = f4;
  using M = i4;
  using I = i4;
  static constexpr int32_t n = 4;
  static V splat(float c) { return V{c, c, c, c}; }
  static I spliti(int32_t c) { return I{c, c, c, c}; }
  static V iota(int32_t x0) { return V{0.f, 1.f, 2.f, 3.f} + (float)x0; }
  static I iotai(int32_t x0) { return I{0, 1, 2, 3} + x0; }
  static V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(float* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static I loadi(const int32_t* p) {
    I v;
    std::memcpy(&v, p, sizeof(I));
    return v;
  }
  static void storei(int32_t* p, I v) { std::memcpy(p, &v, sizeof(I)); }
  static V sel(M m, V a, V b) { return m ? a : b; }
  static I seli(M m, I a, I b) { return m ? a : b; }
  static M andnot(M a, M b) { return a & ~b; }
  static float hsum(V v) { return (v[0] + v[1]) + (v[2] + v[3]); }
  static int32_t count(M m) { return -((m[0] + m[1]) + (m[2] + m[3])); }
  static bool any(M m) { return ((m[0] | m[1]) | (m[2] | m[3])) != 0; }
  static V exp_neg(V s) {
    V x = -s;
    x = x > splat(0.f) ? splat(0.f) : x;  // s < 0 only on lanes that are masked out
    x = x < splat(-87.f) ? splat(-87.f) : x;
    const I k = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, I);  // round(x / ln 2), ties up
    const V fk = __builtin_convertvector(k, V);
    const V r = (x - fk * 0.693359375f) - fk * -2.12194440e-4f;
    V p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const V e = (p * r) * r + r + 1.f;
    return e * (V)((k + 127) << 23);
  }
};

// Per-tile pixel state, structure of arrays indexed by p = (y - y_tile) * ts + (x - x_tile), padded so that a block
// of lanes starting in the last column stays inside the arrays.
template <typename T>
struct TileState {
  std::vector<T> t, t_final, v_alpha, acc, v_out;
  std::vector<int32_t> last;
  explicit TileState(int64_t n)
      : t(n + kMaxLanes),
        t_final(n + kMaxLanes),
        v_alpha(n + kMaxLanes),
        acc(n * kMaxChannels + kMaxLanes),
        v_out(n * kMaxChannels + kMaxLanes),
        last(n + kMaxLanes) {}
};

// Visits the pixel blocks of Gaussian s inside the tile [xb, xe) x [yb, ye): fn(p, xc, dy, lanes_in) per block of
// P::n lanes starting at the row span's first pixel, p = index of the block's first lane; lanes past the span are
// masked (they read and write back pixels of the padded state arrays).
template <typename T, typename F>
inline void for_blocks(const Prep<T>& s, int64_t xb, int64_t xe, int64_t yb, int64_t ye, int64_t ts, F&& fn) {
  using P = Pack<T>;
  const int32_t x0 = std::max<int32_t>(s.x0, (int32_t)xb), x1 = std::min<int32_t>(s.x1, (int32_t)xe - 1);
  const int32_t y0 = std::max<int32_t>(s.y0, (int32_t)yb), y1 = std::min<int32_t>(s.y1, (int32_t)ye - 1);
  if (x0 > x1 || y0 > y1) return;
  for (int32_t y = y0; y <= y1; ++y) {
    const T dy = s.my - ((T)y + T(0.5));
    int32_t xa = x0, xz = x1;
    if (!s.row_span(dy, xa, xz)) continue;
    const auto in_lo = P::spliti(xa), in_hi = P::spliti(xz);
    const int64_t row = (y - yb) * ts - xb;
    for (int32_t xc = xa; xc <= xz; xc += P::n) {
      const auto xi = P::iotai(xc);
      fn(row + xc, xc, dy, (xi >= in_lo) & (xi <= in_hi));
    }
  }
}

// sigma, exp(-sigma) and the clamped alpha of a block of lanes at x = xc + lane.
template <typename T>
inline void eval_block(const Prep<T>& s, int32_t xc, T dy, typename Pack<T>::V& dx, typename Pack<T>::V& sigma,
                       typename Pack<T>::V& vis, typename Pack<T>::V& ov, typename Pack<T>::V& alpha) {
  using P = Pack<T>;
  dx = s.mx - (P::iota(xc) + T(0.5));
  sigma = T(0.5) * (s.a * dx * dx + s.c * dy * dy) + s.b * dx * dy;
  vis = P::exp_neg(sigma);
  ov = s.o * vis;
  alpha = P::sel(ov < P::splat(Rule<T>::alpha_max), ov, P::splat(Rule<T>::alpha_max));
}

template <typename T, int D>
void forward_tiles(const std::vector<Prep<T>>& prep, const int64_t* offs, const int32_t* ids, const Grid& G, T* out,
                   T* alpha_out, T* tfin, int32_t* last_out) {
  using P = Pack<T>;
  using V = typename P::V;
  using M = typename P::M;
  const int64_t ts = G.ts, n_items = G.C * G.TT, S2 = ts * ts;
#pragma omp parallel num_threads(at::get_num_threads())
  {
    const FlushDenormals ftz;
    TileState<T> st(S2);
    T* Tt = st.t.data();  // > 0: running transmittance; < 0: pixel done, holding -T_final
    T* acc = st.acc.data();
    int32_t* lst = st.last.data();
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t c = item / G.TT, t = item % G.TT;
      const int64_t xb = (t % G.TW) * ts, yb = (t / G.TW) * ts;
      const int64_t xe = std::min(G.W, xb + ts), ye = std::min(G.H, yb + ts);
      const int64_t npix = (xe - xb) * (ye - yb);
      std::fill(st.t.begin(), st.t.end(), T(1));
      std::fill(st.acc.begin(), st.acc.end(), T(0));
      std::fill(st.last.begin(), st.last.end(), -1);
      int64_t n_done = 0;
      const Prep<T>* pc = prep.data() + c * G.N;
      const int64_t k_end = offs[item + 1];
      for (int64_t k = offs[item]; k < k_end && n_done < npix; ++k) {
        if (k + kPrefetch < k_end) __builtin_prefetch(pc + ids[k + kPrefetch]);
        const Prep<T>& s = pc[ids[k]];
        const auto kk = P::spliti((int32_t)k);
        for_blocks<T>(s, xb, xe, yb, ye, ts, [&](int64_t p, int32_t xc, T dy, M in) {
          const V tp = P::load(Tt + p);
          const M live = in & (tp > P::splat(T(0)));
          if (!P::any(live)) return;  // every lane done or outside the span
          V dx, sigma, vis, ov, alpha;
          eval_block<T>(s, xc, dy, dx, sigma, vis, ov, alpha);
          const M valid = live & (sigma >= P::splat(T(0))) & (alpha >= P::splat(Rule<T>::alpha_min));
          const V nt = tp * (T(1) - alpha);
          const M keep = nt > P::splat(Rule<T>::t_min);
          const M contrib = valid & keep;
          const M term = P::andnot(valid, keep);
          const V w = P::sel(contrib, alpha * tp, P::splat(T(0)));
          for (int d = 0; d < D; ++d) P::store(acc + d * S2 + p, P::load(acc + d * S2 + p) + w * s.col[d]);
          P::store(Tt + p, P::sel(contrib, nt, P::sel(term, -tp, tp)));
          P::storei(lst + p, P::seli(contrib, kk, P::loadi(lst + p)));
          n_done += P::count(term);
        });
      }
      for (int64_t y = yb; y < ye; ++y) {
        for (int64_t x = xb; x < xe; ++x) {
          const int64_t p = (y - yb) * ts + (x - xb);
          const int64_t q = (c * G.H + y) * G.W + x;
          const T tf = std::abs(Tt[p]);
          for (int d = 0; d < D; ++d) out[q * D + d] = acc[d * S2 + p];
          alpha_out[q] = T(1) - tf;
          tfin[q] = tf;
          last_out[q] = lst[p];
        }
      }
    }
  }
}

// Walks each tile back to front (3DGS): T is recovered by division, `buf` holds the colour composited behind the
// current Gaussian. Gradient slot per intersection: [mean.x, mean.y, conic a, b, c, opacity, colour 0..D-1].
template <typename T, int D>
void backward_tiles(const std::vector<Prep<T>>& prep, const int64_t* offs, const int32_t* ids, const Grid& G,
                    const T* tfin, const int32_t* last, const T* v_out, const T* v_alpha, T* slots) {
  using P = Pack<T>;
  using V = typename P::V;
  using M = typename P::M;
  const int64_t S = 6 + D;
  const int64_t ts = G.ts, n_items = G.C * G.TT, S2 = ts * ts;
#pragma omp parallel num_threads(at::get_num_threads())
  {
    const FlushDenormals ftz;
    TileState<T> st(S2);
    T* Tt = st.t.data();
    T* tf = st.t_final.data();
    T* va = st.v_alpha.data();
    T* vc = st.v_out.data();
    T* buf = st.acc.data();
    int32_t* lst = st.last.data();
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t c = item / G.TT, t = item % G.TT;
      const int64_t xb = (t % G.TW) * ts, yb = (t / G.TW) * ts;
      const int64_t xe = std::min(G.W, xb + ts), ye = std::min(G.H, yb + ts);
      int64_t kmax = -1;
      std::fill(st.acc.begin(), st.acc.end(), T(0));
      std::fill(st.last.begin(), st.last.end(), -1);
      for (int64_t y = yb; y < ye; ++y) {
        for (int64_t x = xb; x < xe; ++x) {
          const int64_t p = (y - yb) * ts + (x - xb);
          const int64_t q = (c * G.H + y) * G.W + x;
          Tt[p] = tf[p] = tfin[q];
          va[p] = v_alpha[q];
          for (int d = 0; d < D; ++d) vc[d * S2 + p] = v_out[q * D + d];
          lst[p] = last[q];
          kmax = std::max<int64_t>(kmax, last[q]);
        }
      }
      const Prep<T>* pc = prep.data() + c * G.N;
      const int64_t k_begin = offs[item];
      for (int64_t k = kmax; k >= k_begin; --k) {
        if (k - kPrefetch >= k_begin) __builtin_prefetch(pc + ids[k - kPrefetch]);
        const Prep<T>& s = pc[ids[k]];
        const auto kk = P::spliti((int32_t)k);
        const V zero = P::splat(T(0));
        V gmx = zero, gmy = zero, ga = zero, gb = zero, gc = zero, go = zero;
        V gcol[kMaxChannels] = {zero, zero, zero, zero};
        for_blocks<T>(s, xb, xe, yb, ye, ts, [&](int64_t p, int32_t xc, T dy, M in) {
          const M live = in & (kk <= P::loadi(lst + p));
          if (!P::any(live)) return;  // every lane behind its last contributor or outside the span
          V dx, sigma, vis, ov, alpha;
          eval_block<T>(s, xc, dy, dx, sigma, vis, ov, alpha);
          const M use = live & (sigma >= zero) & (alpha >= P::splat(Rule<T>::alpha_min));
          const V ra = T(1) / (T(1) - alpha);
          const V t_old = P::load(Tt + p);
          const V tp = t_old * ra;  // transmittance in front of this Gaussian
          const V fac = P::sel(use, alpha * tp, zero);
          V v_al = P::load(tf + p) * ra * P::load(va + p);
          for (int d = 0; d < D; ++d) {
            const V vcd = P::load(vc + d * S2 + p);
            const V bd = P::load(buf + d * S2 + p);
            v_al += (s.col[d] * tp - bd * ra) * vcd;
            gcol[d] += fac * vcd;
            P::store(buf + d * S2 + p, bd + s.col[d] * fac);
          }
          const M unclamped = use & (ov <= P::splat(Rule<T>::alpha_max));
          const V vs = P::sel(unclamped, -ov * v_al, zero);  // d loss / d sigma
          ga += T(0.5) * vs * dx * dx;
          gb += vs * dx * dy;
          gc += T(0.5) * vs * dy * dy;
          gmx += vs * (s.a * dx + s.b * dy);
          gmy += vs * (s.b * dx + s.c * dy);
          go += P::sel(unclamped, vis * v_al, zero);
          P::store(Tt + p, P::sel(use, tp, t_old));
        });
        T* sl = slots + k * S;
        sl[0] = P::hsum(gmx);
        sl[1] = P::hsum(gmy);
        sl[2] = P::hsum(ga);
        sl[3] = P::hsum(gb);
        sl[4] = P::hsum(gc);
        sl[5] = P::hsum(go);
        for (int d = 0; d < D; ++d) sl[6 + d] = P::hsum(gcol[d]);
      }
    }
  }
}

// Sums the intersection slots per Gaussian, cameras in parallel, intersections in a fixed order.
template <typename T>
void reduce_slots(const T* slots, const int64_t* offs, const int32_t* ids, const Grid& G, int64_t D, T* v_m2, T* v_con,
                  T* v_col, T* v_op) {
  const int64_t S = 6 + D;
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads()) if (G.C > 1)
  for (int64_t c = 0; c < G.C; ++c) {
    for (int64_t k = offs[c * G.TT]; k < offs[(c + 1) * G.TT]; ++k) {
      const int64_t g = c * G.N + ids[k];
      const T* s = slots + k * S;
      v_m2[2 * g] += s[0];
      v_m2[2 * g + 1] += s[1];
      v_con[3 * g] += s[2];
      v_con[3 * g + 1] += s[3];
      v_con[3 * g + 2] += s[4];
      v_op[g] += s[5];
      for (int64_t d = 0; d < D; ++d) v_col[g * D + d] += s[6 + d];
    }
  }
}

template <typename F>
void with_channels(int64_t D, F&& f) {
  switch (D) {
    case 1:
      f(std::integral_constant<int, 1>{});
      break;
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    case 3:
      f(std::integral_constant<int, 3>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    default:
      TORCH_CHECK(false, "rasterize_gaussians: the kernel composites 1 to ", kMaxChannels, " channels, got ", D);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_forward_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& depths, const at::Tensor& radii, int64_t width, int64_t height, int64_t tile_size) {
  TORCH_CHECK(width <= kMaxImageSide && height <= kMaxImageSide, "image sides must be <= ", kMaxImageSide);
  const Grid G(means2d.size(0), means2d.size(1), width, height, tile_size);
  const int64_t D = colors.size(2);
  auto fopt = means2d.options();
  at::Tensor out = at::zeros({G.C, height, width, D}, fopt);
  at::Tensor alpha = at::zeros({G.C, height, width, 1}, fopt);
  at::Tensor tfin = at::ones({G.C, height, width}, fopt);
  at::Tensor last = at::full({G.C, height, width}, -1, fopt.dtype(at::kInt));
  std::vector<int64_t> offsets;
  std::vector<int32_t> ids;
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_gaussians_forward_cpu", [&] {
    with_channels(D, [&](auto dc) {
      constexpr int DC = decltype(dc)::value;
      std::vector<Prep<scalar_t>> prep;
      prepare<scalar_t, DC>(means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
                            opacities.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), G, prep);
      bin_gaussians<scalar_t>(prep, depths.data_ptr<scalar_t>(), G, offsets, ids);
      TORCH_CHECK(ids.size() < (size_t)std::numeric_limits<int32_t>::max(), "too many tile intersections");
      forward_tiles<scalar_t, DC>(prep, offsets.data(), ids.data(), G, out.data_ptr<scalar_t>(),
                                  alpha.data_ptr<scalar_t>(), tfin.data_ptr<scalar_t>(), last.data_ptr<int32_t>());
    });
  });
  at::Tensor offs_t = at::empty({(int64_t)offsets.size()}, fopt.dtype(at::kLong));
  std::copy(offsets.begin(), offsets.end(), offs_t.data_ptr<int64_t>());
  at::Tensor ids_t = at::empty({(int64_t)ids.size()}, fopt.dtype(at::kInt));
  std::copy(ids.begin(), ids.end(), ids_t.data_ptr<int32_t>());
  return {out, alpha, tfin, last, offs_t, ids_t};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_gaussians_backward_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& radii, const at::Tensor& t_final, const at::Tensor& last, const at::Tensor& tile_offsets,
    const at::Tensor& flat_ids, const at::Tensor& v_render, const at::Tensor& v_alpha, int64_t width, int64_t height,
    int64_t tile_size) {
  TORCH_CHECK(width <= kMaxImageSide && height <= kMaxImageSide, "image sides must be <= ", kMaxImageSide);
  const Grid G(means2d.size(0), means2d.size(1), width, height, tile_size);
  const int64_t D = colors.size(2);
  at::Tensor v_m2 = at::zeros_like(means2d);
  at::Tensor v_con = at::zeros_like(conics);
  at::Tensor v_col = at::zeros_like(colors);
  at::Tensor v_op = at::zeros_like(opacities);
  at::Tensor slots = at::zeros({flat_ids.numel(), 6 + D}, means2d.options());
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_gaussians_backward_cpu", [&] {
    with_channels(D, [&](auto dc) {
      constexpr int DC = decltype(dc)::value;
      std::vector<Prep<scalar_t>> prep;
      prepare<scalar_t, DC>(means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
                            opacities.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), G, prep);
      backward_tiles<scalar_t, DC>(prep, tile_offsets.data_ptr<int64_t>(), flat_ids.data_ptr<int32_t>(), G,
                                   t_final.data_ptr<scalar_t>(), last.data_ptr<int32_t>(),
                                   v_render.data_ptr<scalar_t>(), v_alpha.data_ptr<scalar_t>(),
                                   slots.data_ptr<scalar_t>());
    });
    reduce_slots<scalar_t>(slots.data_ptr<scalar_t>(), tile_offsets.data_ptr<int64_t>(), flat_ids.data_ptr<int32_t>(),
                           G, D, v_m2.data_ptr<scalar_t>(), v_con.data_ptr<scalar_t>(), v_col.data_ptr<scalar_t>(),
                           v_op.data_ptr<scalar_t>());
  });
  return {v_m2, v_con, v_col, v_op};
}
