// Hash-grid encoding, C++ CPU kernel (OpenMP). Formulas: hash_grid.h.
//
// Work order: each thread owns a contiguous range of points and sweeps it level by level, so one level's table
// (a few MiB) stays in cache while it is gathered from. Gradients:
//   - to the table: when there are at least two levels per thread, levels are partitioned between threads, so each
//     table entry has one writer and plain adds are race-free; otherwise points are partitioned and the adds are
//     `omp atomic`.
//   - to the inputs: a separate pass over point ranges (each thread writes only its own points' rows), which
//     recomputes indices and weights and re-reads the table. No per-point temporaries beyond the outputs.
#include <omp.h>

#include <algorithm>
#include <type_traits>

#include "hash_grid.h"

namespace nerfhead {
namespace hash_grid {
namespace {

// Calls fn(std::integral_constant<int, D>, std::integral_constant<int, F>) for the runtime D and F.
template <typename Fn>
void dispatch_dims_features(int64_t dims, int64_t features, Fn&& fn) {
  auto with_f = [&](auto d) {
    switch (features) {
      case 1: return fn(d, std::integral_constant<int, 1>{});
      case 2: return fn(d, std::integral_constant<int, 2>{});
      case 4: return fn(d, std::integral_constant<int, 4>{});
      case 8: return fn(d, std::integral_constant<int, 8>{});
      default: TORCH_CHECK(false, "hash_grid: n_features must be 1, 2, 4 or 8, got ", features);
    }
  };
  switch (dims) {
    case 2: return with_f(std::integral_constant<int, 2>{});
    case 3: return with_f(std::integral_constant<int, 3>{});
    case 4: return with_f(std::integral_constant<int, 4>{});
    default: TORCH_CHECK(false, "hash_grid: input dimension must be 2, 3 or 4, got ", dims);
  }
}

int threads_for(int64_t n) {
  const int64_t by_work = std::max<int64_t>(1, n / 512);
  return static_cast<int>(std::min<int64_t>(at::get_num_threads(), by_work));
}

// This thread's contiguous share [begin, end) of n items.
inline void thread_range(int64_t n, int64_t& begin, int64_t& end) {
  const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  const int64_t chunk = (n + nt - 1) / nt;
  begin = std::min(n, t * chunk);
  end = std::min(n, begin + chunk);
}

template <int D, int F, typename S>
void forward_impl(int64_t n, const S* x, const S* table, const Levels& lv, bool smooth, S* out) {
  const int64_t row = int64_t(lv.n_levels) * F;
#pragma omp parallel num_threads(threads_for(n))
  {
    int64_t begin, end;
    thread_range(n, begin, end);
    for (int l = 0; l < lv.n_levels; ++l) {
      for (int64_t i = begin; i < end; ++i) {
        S acc[F];
        encode_level<D, F, S, S>(x + i * D, table, lv, l, smooth, acc);
        S* o = out + i * row + int64_t(l) * F;
        for (int f = 0; f < F; ++f) o[f] = acc[f];
      }
    }
  }
}

template <int F, typename S>
inline void load_grad(const S* grad_out, int64_t i, int64_t row, int l, S (&g)[F]) {
  const S* p = grad_out + i * row + int64_t(l) * F;
  for (int f = 0; f < F; ++f) g[f] = p[f];
}

template <int D, int F, typename S>
void table_grad_impl(int64_t n, const S* grad_out, const S* x, const Levels& lv, bool smooth, S* gt) {
  const int64_t row = int64_t(lv.n_levels) * F;
  const int nt = threads_for(n);
  if (nt == 1 || lv.n_levels >= 2 * nt) {
    // Levels partitioned between threads: each entry has exactly one writer.
    auto plain = [gt](int64_t e, S v) { gt[e] += v; };
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int l = lv.n_levels - 1; l >= 0; --l) {  // finest (most expensive) levels first
      for (int64_t i = 0; i < n; ++i) {
        S g[F];
        load_grad<F>(grad_out, i, row, l, g);
        table_grad_level<D, F, S>(x + i * D, lv, l, smooth, g, plain);
      }
    }
  } else {
    // Fewer levels than threads can share: points partitioned, atomic adds.
    auto atomic = [gt](int64_t e, S v) {
#pragma omp atomic
      gt[e] += v;
    };
#pragma omp parallel num_threads(nt)
    {
      int64_t begin, end;
      thread_range(n, begin, end);
      for (int l = 0; l < lv.n_levels; ++l) {
        for (int64_t i = begin; i < end; ++i) {
          S g[F];
          load_grad<F>(grad_out, i, row, l, g);
          table_grad_level<D, F, S>(x + i * D, lv, l, smooth, g, atomic);
        }
      }
    }
  }
}

template <int D, int F, typename S>
void input_grad_impl(int64_t n, const S* grad_out, const S* x, const S* table, const Levels& lv, bool smooth,
                     S* gx) {
  const int64_t row = int64_t(lv.n_levels) * F;
#pragma omp parallel num_threads(threads_for(n))
  {
    int64_t begin, end;
    thread_range(n, begin, end);
    for (int l = 0; l < lv.n_levels; ++l) {
      for (int64_t i = begin; i < end; ++i) {
        S g[F];
        load_grad<F>(grad_out, i, row, l, g);
        S dx[D];
        for (int d = 0; d < D; ++d) dx[d] = gx[i * D + d];
        input_grad_level<D, F, S, S>(x + i * D, table, lv, l, smooth, g, dx);
        for (int d = 0; d < D; ++d) gx[i * D + d] = dx[d];
      }
    }
  }
}

}  // namespace

at::Tensor hash_grid_forward_cpu(const at::Tensor& x, const at::Tensor& table, const Levels& lv, int64_t n_features,
                                 bool smoothstep) {
  const int64_t n = x.size(0);
  auto out = at::empty({n, int64_t(lv.n_levels) * n_features}, table.options());
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_grid_forward_cpu", [&] {
    dispatch_dims_features(x.size(1), n_features, [&](auto d, auto f) {
      forward_impl<decltype(d)::value, decltype(f)::value, scalar_t>(
          n, x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), lv, smoothstep, out.data_ptr<scalar_t>());
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> hash_grid_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                          const at::Tensor& table, const Levels& lv,
                                                          int64_t n_features, bool smoothstep, bool need_table_grad,
                                                          bool need_input_grad) {
  const int64_t n = x.size(0);
  at::Tensor gt, gx;
  if (need_table_grad) gt = at::zeros_like(table);
  if (need_input_grad) gx = at::zeros_like(x);
  if (n == 0) return {gt, gx};
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_grid_backward_cpu", [&] {
    dispatch_dims_features(x.size(1), n_features, [&](auto d, auto f) {
      constexpr int D = decltype(d)::value, F = decltype(f)::value;
      const scalar_t* go = grad_out.data_ptr<scalar_t>();
      const scalar_t* xp = x.data_ptr<scalar_t>();
      if (need_table_grad) table_grad_impl<D, F, scalar_t>(n, go, xp, lv, smoothstep, gt.data_ptr<scalar_t>());
      if (need_input_grad)
        input_grad_impl<D, F, scalar_t>(n, go, xp, table.data_ptr<scalar_t>(), lv, smoothstep,
                                        gx.data_ptr<scalar_t>());
    });
  });
  return {gt, gx};
}

}  // namespace hash_grid
}  // namespace nerfhead
