// Fused gather -> GEMM -> scatter sparse convolution for CPUs (optional; see fourdcontrast/sparse/native.py).
//
// A kernel map lists, offset by offset, the pairs (in_rows[p], out_rows[p]) of one convolution; offset k
// owns counts[k] consecutive pairs. For one offset the map is a translation, so its input rows are all
// distinct and so are its output rows: the pairs of one offset can be cut into chunks that threads
// process independently without races. Each thread gathers a chunk of rows into a small buffer that
// stays in its cache, multiplies it by the offset's weight (BLAS through ATen, single-threaded inside
// the parallel region) and adds the product rows into the destination. Compared with the batched
// PyTorch path (gather the whole group, bmm, index_add_), no large temporaries are written and read back.
//
//   forward           out[o]     += in[i] @ W[k]
//   input gradient    grad_in[i] += grad_out[o] @ W[k]^T
//   weight gradient   grad_W[k]  += in[i]^T @ grad_out[o]      (per-thread partial sums, then reduced)
//
// scratch: a (threads, per_thread) buffer owned by the caller (reused across calls, no allocation here).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace {

#if defined(__x86_64__) || defined(__i386__)
inline void cpu_relax() { _mm_pause(); }
#else
inline void cpu_relax() {}
#endif

// A spinning barrier for the threads of one parallel region. OpenMP's own barrier sleeps at once
// under OMP_WAIT_POLICY=PASSIVE (the setting that keeps a busy 2-core machine responsive), and waking
// a thread costs ~50 us: more than the work of a small kernel offset. The threads here only ever wait
// for the rest of one offset's chunks, so they spin (and yield after a while, for oversubscribed CPUs).
class SpinBarrier {
 public:
  explicit SpinBarrier(int parties) : parties_(parties) {}
  void wait() {
    const int phase = phase_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == parties_) {
      arrived_.store(0, std::memory_order_relaxed);
      phase_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int64_t spins = 0; phase_.load(std::memory_order_acquire) == phase; ++spins) {
      if (spins < (1 << 11)) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  int parties_;
  std::atomic<int> arrived_{0};
  std::atomic<int> phase_{0};
};

template <typename scalar_t, typename index_t>
void gather_rows(scalar_t* dst, const scalar_t* src, const index_t* rows, int64_t n, int64_t width) {
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(dst + r * width, src + static_cast<int64_t>(rows[r]) * width, width * sizeof(scalar_t));
  }
}

template <typename scalar_t, typename index_t>
void scatter_add_rows(scalar_t* dst, const scalar_t* src, const index_t* rows, int64_t n, int64_t width) {
  for (int64_t r = 0; r < n; ++r) {
    scalar_t* d = dst + static_cast<int64_t>(rows[r]) * width;
    const scalar_t* s = src + r * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) d[j] += s[j];
  }
}

// Chunks of one offset: near-equal lengths of at most `chunk` pairs, their number a multiple of the
// thread count when the offset is large enough to share (so that no thread waits for a long last one).
// Threads take fixed, contiguous runs of chunks: the weight gradient's partial sums, and so the
// results, do not depend on timing (deterministic for a given thread count).
struct OffsetPlan {
  int64_t k, start, n, n_chunks, len;
};

std::vector<OffsetPlan> plan_offsets(const std::vector<int64_t>& counts, int64_t chunk, int64_t threads) {
  std::vector<OffsetPlan> plan;
  int64_t start = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    const int64_t n = counts[k];
    if (n > 0) {
      int64_t n_chunks = (n + chunk - 1) / chunk;
      if (threads > 1 && n >= 64 * threads) n_chunks = (n_chunks + threads - 1) / threads * threads;
      const int64_t len = (n + n_chunks - 1) / n_chunks;
      plan.push_back({static_cast<int64_t>(k), start, n, (n + len - 1) / len, len});
    }
    start += n;
  }
  return plan;
}

// Wraps each piece of work of a parallel region: an exception there is kept (the first one is rethrown
// after the region) and later work is skipped, while every thread still reaches every barrier, so
// nobody waits forever.
class Guard {
 public:
  template <typename Fn>
  void operator()(Fn&& fn) {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      fn();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true);
    }
  }
  void rethrow() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr error_;
};

// Runs chunk(tid, op, start, len, first) for every chunk of every planned offset on one OpenMP team: each
// thread takes a fixed contiguous run of each offset's chunks (`first`: the first of its run), and all
// threads finish an offset before any starts the next one (its pairs may share destination rows). With
// `reduce`, after an offset's chunks each thread also runs done(tid, team, op), and a second barrier
// keeps the next offset from overwriting what done() reads.
template <typename Chunk, typename Done>
void run_offsets(const std::vector<OffsetPlan>& plan, int64_t threads, Chunk&& chunk, bool reduce, Done&& done) {
  Guard guard;
  std::unique_ptr<SpinBarrier> barrier;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    at::NoGradGuard no_grad;  // worker threads do not inherit the caller's grad mode
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#pragma omp single
    barrier = std::make_unique<SpinBarrier>(team);  // implicit OpenMP barrier after `single`
    for (const OffsetPlan& op : plan) {
      const int64_t first = op.n_chunks * tid / team, last = op.n_chunks * (tid + 1) / team;
      for (int64_t c = first; c < last; ++c) {
        guard([&] {
          const int64_t s = op.start + c * op.len;
          chunk(tid, op, s, std::min(op.len, op.start + op.n - s), c == first);
        });
      }
      barrier->wait();
      if (reduce) {
        guard([&] { done(tid, team, op); });
        barrier->wait();
      }
    }
  }
  guard.rethrow();
}

// Whether thread `tid` of `team` had chunks of offset `op` in run_offsets.
inline bool has_chunks(const OffsetPlan& op, int tid, int team) {
  return op.n_chunks * tid / team < op.n_chunks * (tid + 1) / team;
}

void check_common(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& in_rows,
                  const at::Tensor& out_rows, const std::vector<int64_t>& counts, const at::Tensor& scratch) {
  TORCH_CHECK(features.device().is_cpu() && weight.device().is_cpu(), "native sparse conv: CPU tensors only");
  TORCH_CHECK(features.dim() == 2 && features.is_contiguous(), "features must be a contiguous (N, C_in) matrix");
  TORCH_CHECK(weight.dim() == 3 && weight.is_contiguous(), "weight must be a contiguous (K, C_in, C_out) tensor");
  TORCH_CHECK(weight.size(1) == features.size(1), "weight C_in does not match the features");
  TORCH_CHECK(weight.scalar_type() == features.scalar_type(), "weight and features differ in dtype");
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == weight.size(0), "one pair count per kernel offset needed");
  TORCH_CHECK(in_rows.scalar_type() == out_rows.scalar_type(), "in_rows and out_rows differ in dtype");
  TORCH_CHECK(in_rows.is_contiguous() && out_rows.is_contiguous(), "row lists must be contiguous");
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  TORCH_CHECK(total == in_rows.numel() && total == out_rows.numel(), "counts do not add up to the pairs");
  TORCH_CHECK(scratch.dim() == 2 && scratch.is_contiguous() && scratch.size(0) >= at::get_num_threads(),
              "scratch must be (threads, per_thread) with one row per thread");
  TORCH_CHECK(scratch.scalar_type() == features.scalar_type(), "scratch dtype differs from the features");
}

template <typename scalar_t, typename index_t>
void forward_impl(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& in_rows,
                  const at::Tensor& out_rows, const std::vector<int64_t>& counts, at::Tensor& out,
                  at::Tensor& scratch, int64_t chunk) {
  const int64_t c_in = weight.size(1), c_out = weight.size(2);
  TORCH_CHECK(scratch.size(1) >= chunk * (c_in + c_out), "scratch too small");
  const scalar_t* f = features.const_data_ptr<scalar_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  const index_t* in_r = in_rows.const_data_ptr<index_t>();
  const index_t* out_r = out_rows.const_data_ptr<index_t>();
  const int64_t threads = at::get_num_threads();
  const std::vector<OffsetPlan> plan = plan_offsets(counts, chunk, threads);
  auto chunk_fn = [&](int tid, const OffsetPlan& op, int64_t s, int64_t len, bool) {
    at::Tensor buf = scratch.select(0, tid);
    at::Tensor x = buf.narrow(0, 0, len * c_in).view({len, c_in});
    at::Tensor y = buf.narrow(0, chunk * c_in, len * c_out).view({len, c_out});
    gather_rows(x.data_ptr<scalar_t>(), f, in_r + s, len, c_in);
    at::mm_out(y, x, weight.select(0, op.k));
    scatter_add_rows(o, y.const_data_ptr<scalar_t>(), out_r + s, len, c_out);
  };
  run_offsets(plan, threads, chunk_fn, false, [](int, int, const OffsetPlan&) {});
}

template <typename scalar_t, typename index_t>
void backward_impl(const at::Tensor& grad_out, const at::Tensor& features, const at::Tensor& weight,
                   const at::Tensor& in_rows, const at::Tensor& out_rows, const std::vector<int64_t>& counts,
                   at::Tensor* grad_in, at::Tensor* grad_w, at::Tensor& scratch, int64_t chunk) {
  const int64_t c_in = weight.size(1), c_out = weight.size(2), cc = c_in * c_out;
  TORCH_CHECK(scratch.size(1) >= chunk * (2 * c_in + c_out) + cc, "scratch too small");
  const scalar_t* f = features.const_data_ptr<scalar_t>();
  const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
  scalar_t* gi = grad_in ? grad_in->data_ptr<scalar_t>() : nullptr;
  scalar_t* gw = grad_w ? grad_w->data_ptr<scalar_t>() : nullptr;
  const index_t* in_r = in_rows.const_data_ptr<index_t>();
  const index_t* out_r = out_rows.const_data_ptr<index_t>();
  const int64_t threads = at::get_num_threads();
  const std::vector<OffsetPlan> plan = plan_offsets(counts, chunk, threads);
  if (gw) {  // offsets without pairs get zero gradients (the caller adds the identity offset's)
    for (size_t k = 0; k < counts.size(); ++k) {
      if (counts[k] == 0) std::fill(gw + static_cast<int64_t>(k) * cc, gw + static_cast<int64_t>(k + 1) * cc, 0);
    }
  }
  const int64_t partial_at = chunk * (2 * c_in + c_out);
  auto chunk_fn = [&](int tid, const OffsetPlan& op, int64_t s, int64_t len, bool first) {
    at::Tensor buf = scratch.select(0, tid);
    at::Tensor gy = buf.narrow(0, 0, len * c_out).view({len, c_out});
    gather_rows(gy.data_ptr<scalar_t>(), g, out_r + s, len, c_out);
    if (gi) {
      at::Tensor gx = buf.narrow(0, chunk * c_out, len * c_in).view({len, c_in});
      at::mm_out(gx, gy, weight.select(0, op.k).t());
      scatter_add_rows(gi, gx.const_data_ptr<scalar_t>(), in_r + s, len, c_in);
    }
    if (gw) {  // this thread's partial sum of in[i]^T @ grad[o] over its chunks of the offset
      at::Tensor x = buf.narrow(0, chunk * (c_out + c_in), len * c_in).view({len, c_in});
      at::Tensor acc = buf.narrow(0, partial_at, cc).view({c_in, c_out});
      gather_rows(x.data_ptr<scalar_t>(), f, in_r + s, len, c_in);
      if (first) {
        at::mm_out(acc, x.t(), gy);
      } else {
        acc.addmm_(x.t(), gy);
      }
    }
  };
  // each thread sums one slice of the per-thread partial sums into grad_w[k] (no zero-filled grad_w)
  auto reduce_fn = [&](int tid, int team, const OffsetPlan& op) {
    const int64_t lo = cc * tid / team, hi = cc * (tid + 1) / team;
    scalar_t* dst = gw + op.k * cc;
    std::fill(dst + lo, dst + hi, 0);
    for (int u = 0; u < team; ++u) {
      if (!has_chunks(op, u, team)) continue;
      const scalar_t* src = scratch.select(0, u).const_data_ptr<scalar_t>() + partial_at;
      for (int64_t j = lo; j < hi; ++j) dst[j] += src[j];
    }
  };
  run_offsets(plan, threads, chunk_fn, gw != nullptr, reduce_fn);
}

}  // namespace

void conv_forward(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& in_rows,
                  const at::Tensor& out_rows, const std::vector<int64_t>& counts, at::Tensor out,
                  at::Tensor scratch, int64_t chunk) {
  check_common(features, weight, in_rows, out_rows, counts, scratch);
  TORCH_CHECK(out.dim() == 2 && out.is_contiguous() && out.size(1) == weight.size(2) &&
                  out.scalar_type() == features.scalar_type(),
              "out must be a contiguous (N_out, C_out) matrix of the features' dtype");
  TORCH_CHECK(chunk > 0, "chunk must be positive");
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "fourdcontrast_conv_forward", [&] {
    if (in_rows.scalar_type() == at::kInt) {
      forward_impl<scalar_t, int32_t>(features, weight, in_rows, out_rows, counts, out, scratch, chunk);
    } else {
      TORCH_CHECK(in_rows.scalar_type() == at::kLong, "row lists must be int32 or int64");
      forward_impl<scalar_t, int64_t>(features, weight, in_rows, out_rows, counts, out, scratch, chunk);
    }
  });
}

void conv_backward(const at::Tensor& grad_out, const at::Tensor& features, const at::Tensor& weight,
                   const at::Tensor& in_rows, const at::Tensor& out_rows, const std::vector<int64_t>& counts,
                   std::optional<at::Tensor> grad_in, std::optional<at::Tensor> grad_w, at::Tensor scratch,
                   int64_t chunk) {
  check_common(features, weight, in_rows, out_rows, counts, scratch);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.is_contiguous() && grad_out.size(1) == weight.size(2) &&
                  grad_out.scalar_type() == features.scalar_type(),
              "grad_out must be a contiguous (N_out, C_out) matrix of the features' dtype");
  if (grad_in) TORCH_CHECK(grad_in->is_contiguous() && grad_in->sizes() == features.sizes(), "bad grad_in");
  if (grad_w) TORCH_CHECK(grad_w->is_contiguous() && grad_w->sizes() == weight.sizes(), "bad grad_w");
  TORCH_CHECK(chunk > 0, "chunk must be positive");
  at::Tensor* gi = grad_in ? &*grad_in : nullptr;
  at::Tensor* gw = grad_w ? &*grad_w : nullptr;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "fourdcontrast_conv_backward", [&] {
    if (in_rows.scalar_type() == at::kInt) {
      backward_impl<scalar_t, int32_t>(grad_out, features, weight, in_rows, out_rows, counts, gi, gw, scratch,
                                       chunk);
    } else {
      TORCH_CHECK(in_rows.scalar_type() == at::kLong, "row lists must be int32 or int64");
      backward_impl<scalar_t, int64_t>(grad_out, features, weight, in_rows, out_rows, counts, gi, gw, scratch,
                                       chunk);
    }
  });
}

// Kernel map by dense-table lookup. Outputs are given by their packed keys in ascending order (`base`)
// and their rows (`out_order`); an input voxel at output + offset k has packed key base[o] + deltas[k]
// and row table[key] (-1: none). The caller guarantees every key lies inside the table's box. Pairs come
// out offset by offset, outputs in key order (what the PyTorch builder produces), the offset `identity`
// (-1: none) left out. Each thread takes a contiguous range of outputs and visits all offsets of one
// output before the next: neighbouring outputs read nearly the same table lines, which stay in cache
// (2x faster than offset by offset). Two passes (count, then fill) write straight into the results.
std::vector<at::Tensor> kernel_map_dense(const at::Tensor& base, const at::Tensor& out_order, const at::Tensor& deltas,
                                         const at::Tensor& table, int64_t identity, bool wide) {
  TORCH_CHECK(base.device().is_cpu() && table.device().is_cpu(), "kernel_map_dense: CPU tensors only");
  TORCH_CHECK(base.scalar_type() == at::kLong && out_order.scalar_type() == at::kLong &&
                  deltas.scalar_type() == at::kLong && table.scalar_type() == at::kInt,
              "kernel_map_dense: int64 keys, rows and deltas, int32 table expected");
  TORCH_CHECK(base.is_contiguous() && out_order.is_contiguous() && deltas.is_contiguous() && table.is_contiguous(),
              "kernel_map_dense: contiguous inputs expected");
  TORCH_CHECK(base.numel() == out_order.numel(), "kernel_map_dense: one row per output key needed");
  const int64_t n_out = base.numel(), volume = deltas.numel(), cells = table.numel();
  const int64_t* b = base.const_data_ptr<int64_t>();
  const int64_t* order = out_order.const_data_ptr<int64_t>();
  const int64_t* d = deltas.const_data_ptr<int64_t>();
  const int32_t* t = table.const_data_ptr<int32_t>();
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_out));
  // counts[th * volume + k]: hits of offset k among thread th's outputs
  std::vector<int64_t> counts(threads * volume, 0);
  // input row of output o at offset k, or -1 (no voxel there, or the identity offset)
  auto row = [&](int64_t o, int64_t k) -> int32_t {
    const int64_t q = b[o] + d[k];
    return (k != identity && q >= 0 && q < cells) ? t[q] : -1;
  };
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads))
  for (int64_t th = 0; th < threads; ++th) {
    int64_t* c = counts.data() + th * volume;
    for (int64_t o = n_out * th / threads; o < n_out * (th + 1) / threads; ++o) {
      for (int64_t k = 0; k < volume; ++k) c[k] += row(o, k) >= 0;
    }
  }
  // cursor[th * volume + k]: where thread th writes its next pair of offset k
  std::vector<int64_t> cursor(threads * volume), per_offset(volume, 0);
  int64_t total = 0;
  for (int64_t k = 0; k < volume; ++k) {
    for (int64_t th = 0; th < threads; ++th) {
      cursor[th * volume + k] = total;
      total += counts[th * volume + k];
      per_offset[k] += counts[th * volume + k];
    }
  }
  const auto dtype = wide ? at::kLong : at::kInt;
  at::Tensor in_rows = at::empty({total}, base.options().dtype(dtype));
  at::Tensor out_rows = at::empty({total}, base.options().dtype(dtype));
  auto fill = [&](auto* in_r, auto* out_r) {
    using index_t = std::remove_pointer_t<decltype(in_r)>;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads))
    for (int64_t th = 0; th < threads; ++th) {
      int64_t* cur = cursor.data() + th * volume;
      for (int64_t o = n_out * th / threads; o < n_out * (th + 1) / threads; ++o) {
        for (int64_t k = 0; k < volume; ++k) {
          const int32_t r = row(o, k);
          if (r >= 0) {
            in_r[cur[k]] = static_cast<index_t>(r);
            out_r[cur[k]++] = static_cast<index_t>(order[o]);
          }
        }
      }
    }
  };
  if (wide) {
    fill(in_rows.data_ptr<int64_t>(), out_rows.data_ptr<int64_t>());
  } else {
    fill(in_rows.data_ptr<int32_t>(), out_rows.data_ptr<int32_t>());
  }
  at::Tensor count_tensor = at::empty({volume}, base.options());
  std::copy(per_offset.begin(), per_offset.end(), count_tensor.data_ptr<int64_t>());
  return {in_rows, out_rows, count_tensor};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fourdcontrast fused sparse convolution kernels (CPU)";
  m.def("conv_forward", &conv_forward, "out += sum_k scatter(gather(features, in_k) @ W[k], out_k)");
  m.def("conv_backward", &conv_backward, "input and weight gradients of conv_forward");
  m.def("kernel_map_dense", &kernel_map_dense, "kernel map pairs by dense-table lookup (in_rows, out_rows, counts)");
}
