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

// Runs body(tid, team, guard) on every thread of one OpenMP team. The body wraps each piece of work in
// guard(...): an exception there is kept (the first one is rethrown after the region) and later work is
// skipped, while the thread still reaches every barrier, so nobody waits forever.
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

template <typename Body>
void run_parallel(int64_t threads, Body&& body) {
  Guard guard;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    at::NoGradGuard no_grad;  // worker threads do not inherit the caller's grad mode
    body(omp_get_thread_num(), omp_get_num_threads(), guard);
  }
  guard.rethrow();
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
  SpinBarrier* barrier = nullptr;
  std::unique_ptr<SpinBarrier> barrier_owner;
  run_parallel(threads, [&](int tid, int team, Guard& guard) {
#pragma omp single
    {
      barrier_owner = std::make_unique<SpinBarrier>(team);
      barrier = barrier_owner.get();
    }  // implicit OpenMP barrier: every thread sees the spin barrier
    at::Tensor buf = scratch.select(0, tid);
    at::Tensor x = buf.narrow(0, 0, chunk * c_in).view({chunk, c_in});
    at::Tensor y = buf.narrow(0, chunk * c_in, chunk * c_out).view({chunk, c_out});
    for (size_t p = 0; p < plan.size(); ++p) {
      const OffsetPlan& op = plan[p];
      const at::Tensor w = weight.select(0, op.k);
      for (int64_t c = op.n_chunks * tid / team, last = op.n_chunks * (tid + 1) / team; c < last; ++c) {
        guard([&] {
          const int64_t s = op.start + c * op.len;
          const int64_t len = std::min(op.len, op.start + op.n - s);
          gather_rows(x.data_ptr<scalar_t>(), f, in_r + s, len, c_in);
          at::Tensor y_len = y.narrow(0, 0, len);
          at::mm_out(y_len, x.narrow(0, 0, len), w);
          scatter_add_rows(o, y.const_data_ptr<scalar_t>(), out_r + s, len, c_out);
        });
      }
      barrier->wait();  // the next offset may write the same output rows
    }
  });
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
  std::vector<char> has_partial(threads, 0);
  SpinBarrier* barrier = nullptr;
  std::unique_ptr<SpinBarrier> barrier_owner;
  const int64_t partial_at = chunk * (2 * c_in + c_out);
  run_parallel(threads, [&](int tid, int team, Guard& guard) {
#pragma omp single
    {
      barrier_owner = std::make_unique<SpinBarrier>(team);
      barrier = barrier_owner.get();
    }
    at::Tensor buf = scratch.select(0, tid);
    at::Tensor gy = buf.narrow(0, 0, chunk * c_out).view({chunk, c_out});
    at::Tensor gx = buf.narrow(0, chunk * c_out, chunk * c_in).view({chunk, c_in});
    at::Tensor x = buf.narrow(0, chunk * (c_out + c_in), chunk * c_in).view({chunk, c_in});
    at::Tensor acc = buf.narrow(0, partial_at, cc).view({c_in, c_out});
    for (size_t p = 0; p < plan.size(); ++p) {
      const OffsetPlan& op = plan[p];
      const at::Tensor w_t = weight.select(0, op.k).t();
      bool first = true;
      for (int64_t c = op.n_chunks * tid / team, last = op.n_chunks * (tid + 1) / team; c < last; ++c) {
        guard([&] {
          const int64_t s = op.start + c * op.len;
          const int64_t len = std::min(op.len, op.start + op.n - s);
          gather_rows(gy.data_ptr<scalar_t>(), g, out_r + s, len, c_out);
          at::Tensor gy_len = gy.narrow(0, 0, len);
          if (gi) {
            at::Tensor gx_len = gx.narrow(0, 0, len);
            at::mm_out(gx_len, gy_len, w_t);
            scatter_add_rows(gi, gx.const_data_ptr<scalar_t>(), in_r + s, len, c_in);
          }
          if (gw) {
            gather_rows(x.data_ptr<scalar_t>(), f, in_r + s, len, c_in);
            if (first) {
              at::mm_out(acc, x.narrow(0, 0, len).t(), gy_len);
            } else {
              acc.addmm_(x.narrow(0, 0, len).t(), gy_len);
            }
            first = false;
          }
        });
      }
      if (gw) {
        has_partial[tid] = first ? 0 : 1;  // (a failed thread may leave `first` set: its partial is ignored)
        barrier->wait();  // every partial sum of this offset is complete
        // each thread sums one slice of the per-thread partial sums into grad_w[k]
        const int64_t lo = cc * tid / team, hi = cc * (tid + 1) / team;
        scalar_t* dst = gw + op.k * cc;
        std::fill(dst + lo, dst + hi, 0);
        for (int u = 0; u < team; ++u) {
          if (!has_partial[u]) continue;
          const scalar_t* src = scratch.select(0, u).const_data_ptr<scalar_t>() + partial_at;
          for (int64_t j = lo; j < hi; ++j) dst[j] += src[j];
        }
      }
      barrier->wait();  // the next offset may write the same input rows, and reuses the partial sums
    }
  });
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fourdcontrast fused sparse convolution kernels (CPU)";
  m.def("conv_forward", &conv_forward, "out += sum_k scatter(gather(features, in_k) @ W[k], out_k)");
  m.def("conv_backward", &conv_backward, "input and weight gradients of conv_forward");
}
