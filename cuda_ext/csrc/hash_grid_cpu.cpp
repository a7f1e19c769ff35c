// Hash-grid encoding, C++ CPU kernel (OpenMP). Formulas: hash_grid.h.
//
// Work order: each thread owns a contiguous range of points and sweeps it level by level, so one level's table
// (a few MiB) stays in cache while it is gathered from. The backward computes the table and input gradients in one
// pass (indices and weights recomputed, nothing stored per point). Races on the table gradient are avoided by a
// Latin-square schedule (see backward_impl) when there are at least as many levels as threads; with fewer levels
// the table adds are `omp atomic`. Measured on 2 cores, 2^18 points, 16 levels, 2^19 table: the level-partitioned
// plain adds took 0.9-1.1 s where `omp atomic` adds took 1.4-2.2 s.
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>

#include "hash_grid.h"

namespace nerfhead {
namespace hash_grid {
namespace {

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

template <bool kTable, bool kInput, int D, int F, typename S, typename Add>
inline void backward_rows(int64_t begin, int64_t end, int l, const S* grad_out, const S* x, const S* table,
                          const Levels& lv, bool smooth, Add add, S* gx) {
  const int64_t row = int64_t(lv.n_levels) * F;
  for (int64_t i = begin; i < end; ++i) {
    S g[F];
    for (int f = 0; f < F; ++f) g[f] = grad_out[i * row + int64_t(l) * F + f];
    S dx[D] = {};
    backward_level<kTable, kInput, D, F, S, S>(x + i * D, table, lv, l, smooth, g, add, dx);
    if constexpr (kInput) {
      for (int d = 0; d < D; ++d) gx[i * D + d] += dx[d];
    }
  }
}

// gt: [n_entries * F] zeroed (kTable); gx: [N, D] zeroed (kInput).
template <bool kTable, bool kInput, int D, int F, typename S>
void backward_impl(int64_t n, const S* grad_out, const S* x, const S* table, const Levels& lv, bool smooth, S* gt,
                   S* gx) {
  const int nt = threads_for(n);
  auto plain = [gt](int64_t e, S v) { gt[e] += v; };
  if (!kTable || nt == 1) {
    // Each thread writes only its own points' input gradients.
#pragma omp parallel num_threads(nt)
    {
      int64_t begin, end;
      thread_range(n, begin, end);
      for (int l = 0; l < lv.n_levels; ++l)
        backward_rows<kTable, kInput, D, F, S>(begin, end, l, grad_out, x, table, lv, smooth, plain, gx);
    }
  } else if (lv.n_levels >= nt) {
    // Latin square: T point ranges x T level groups (l % T), in T phases; in phase p thread t takes range t and
    // group (t + p) % T, so within a phase no two threads share a point (input gradients) or a level (table).
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t begin, end;
      thread_range(n, begin, end);
      for (int phase = 0; phase < T; ++phase) {
        for (int l = (t + phase) % T; l < lv.n_levels; l += T)
          backward_rows<kTable, kInput, D, F, S>(begin, end, l, grad_out, x, table, lv, smooth, plain, gx);
#pragma omp barrier
      }
    }
  } else {
    // Fewer levels than threads: points partitioned, atomic table adds.
    auto atomic = [gt](int64_t e, S v) {
#pragma omp atomic
      gt[e] += v;
    };
#pragma omp parallel num_threads(nt)
    {
      int64_t begin, end;
      thread_range(n, begin, end);
      for (int l = 0; l < lv.n_levels; ++l)
        backward_rows<kTable, kInput, D, F, S>(begin, end, l, grad_out, x, table, lv, smooth, atomic, gx);
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
                                                          const at::Tensor& table, const Levels& lv, int64_t n_features,
                                                          bool smoothstep, bool need_table_grad, bool need_input_grad) {
  const int64_t n = x.size(0);
  at::Tensor gt, gx;
  if (need_table_grad) gt = at::zeros_like(table);
  if (need_input_grad) gx = at::zeros_like(x);
  if (n == 0 || (!need_table_grad && !need_input_grad)) return {gt, gx};
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_grid_backward_cpu", [&] {
    scalar_t* gt_ptr = need_table_grad ? gt.data_ptr<scalar_t>() : nullptr;
    scalar_t* gx_ptr = need_input_grad ? gx.data_ptr<scalar_t>() : nullptr;
    dispatch_wanted(need_table_grad, need_input_grad, [&](auto kt, auto ki) {
      dispatch_dims_features(x.size(1), n_features, [&](auto d, auto f) {
        backward_impl<decltype(kt)::value, decltype(ki)::value, decltype(d)::value, decltype(f)::value, scalar_t>(
            n, grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), lv, smoothstep,
            gt_ptr, gx_ptr);
      });
    });
  });
  return {gt, gx};
}

}  // namespace hash_grid
}  // namespace nerfhead
