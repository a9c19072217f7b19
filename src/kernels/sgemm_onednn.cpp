// oneDNN backend: dnnl_sgemm, and brgemm matmul primitives (one per shape,
// shared by all threads) for the products marked lock_free, those of the
// form A B^T with 16 rows or more, and, with CLLM_ONEDNN_MATMUL_MAX=N > 0,
// every product of up to N multiply-adds. The brgemm path needs dense
// operands; a shape without a brgemm kernel takes dnnl_sgemm.
//
// Why two paths: dnnl_sgemm takes a process-wide mutex on every call
// (gemm_info_t::jit_init's kern_mutex in oneDNN 2.6, added there to calm a
// TSan report), a lock operation per product that parallel/lock_count counts
// and that every worker shares; the brgemm matmul takes none once created.
// Attention's products are nearly nine in ten of a step's calls and the
// shortest (microseconds), the ones that would queue on that mutex where
// many cores share it. A B^T products (the linear layers' backward-data
// ones) ran faster on brgemm here. The others stay on dnnl_sgemm: brgemm ran
// them slower (training steps of one-sequence micro-batches 3-8% slower with
// every product on brgemm; docs/BENCHMARKS.md, section 4). Which path a
// product takes depends on its call site and shape only, so the results
// stay bitwise repeatable.
//
// Debian's libdnnl is built with OpenMP: oneDNN called from a plain thread
// would start an OpenMP team of omp_get_max_threads() threads per caller,
// oversubscribing the cores the other workers use. The OpenMP thread count is
// a per-thread setting (nthreads-var ICV), so each calling thread sets it to 1
// once before its first product.
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_debug.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

#include "kernels/sgemm_backends.h"

namespace cllm::kernels::detail {
namespace {

// The other products go to dnnl_sgemm above this many multiply-adds (see
// above): CLLM_ONEDNN_MATMUL_MAX, default 0 (all of them; 1e30: brgemm for
// every dense one).
constexpr double kDefaultMatmulMax = 0;

double matmul_max() {
  static const double limit = [] {
    const char* env = std::getenv("CLLM_ONEDNN_MATMUL_MAX");
    if (env == nullptr || *env == '\0') return kDefaultMatmulMax;
    const std::string_view text(env);
    double value = -1;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || !(value >= 0)) {
      throw std::invalid_argument("CLLM_ONEDNN_MATMUL_MAX='" + std::string(text) +
                                  "' is not a number of multiply-adds >= 0 (default 0: dnnl_sgemm for the products "
                                  "that are neither attention's nor A B^T)");
    }
    return value;
  }();
  return limit;
}

void check(dnnl_status_t status, const char* what, const GemmShape& s) {
  if (status == dnnl_success) return;
  throw std::runtime_error(std::string("sgemm (onednn): ") + what + " failed with status " +
                           dnnl_status2str(status) + " for m=" + std::to_string(s.m) + " n=" +
                           std::to_string(s.n) + " k=" + std::to_string(s.k));
}

void call_dnnl_sgemm(const GemmShape& s, const float* a, const float* b, float* c) {
  check(dnnl_sgemm(s.trans_a ? 'T' : 'N', s.trans_b ? 'T' : 'N', s.m, s.n, s.k, s.alpha, a, s.lda, b, s.ldb, s.beta,
                   c, s.ldc),
        "dnnl_sgemm", s);
}

// Everything a product's kernel depends on; the pointers are not part of it.
struct ShapeKey {
  GemmShape s;
  dnnl::memory::data_type operands;  // of A and B
  dnnl::memory::data_type result = dnnl::memory::data_type::f32;  // of C
  bool bias = false;                                               // a bias row added before C is written
  bool operator==(const ShapeKey& o) const {
    return operands == o.operands && result == o.result && bias == o.bias && s.trans_a == o.s.trans_a &&
           s.trans_b == o.s.trans_b && s.m == o.s.m && s.n == o.s.n &&
           s.k == o.s.k && s.lda == o.s.lda && s.ldb == o.s.ldb && s.ldc == o.s.ldc &&
           std::memcmp(&s.alpha, &o.s.alpha, sizeof(float)) == 0 &&
           std::memcmp(&s.beta, &o.s.beta, sizeof(float)) == 0;
  }
};

struct ShapeHash {
  std::size_t operator()(const ShapeKey& key) const {
    const GemmShape& s = key.s;
    std::size_t h = static_cast<std::size_t>(s.trans_a) | static_cast<std::size_t>(s.trans_b) << 1 |
                    static_cast<std::size_t>(key.bias) << 2 | static_cast<std::size_t>(key.operands) << 3 |
                    static_cast<std::size_t>(key.result) << 11;
    for (int v : {s.m, s.n, s.k, s.lda, s.ldb, s.ldc}) h = h * 1000003u ^ static_cast<std::size_t>(v);
    std::uint32_t bits[2];
    std::memcpy(&bits[0], &s.alpha, sizeof(float));
    std::memcpy(&bits[1], &s.beta, sizeof(float));
    return (h * 1000003u ^ bits[0]) * 1000003u ^ bits[1];
  }
};

// A row-major matrix stored rows x cols with row stride ld, seen as op(X):
// the transposed view swaps the dimensions and the strides.
dnnl::memory::desc matrix_desc(int rows, int cols, int ld, bool transposed, dnnl::memory::data_type type) {
  using dims = dnnl::memory::dims;
  return transposed ? dnnl::memory::desc(dims{cols, rows}, type, dims{1, ld})
                    : dnnl::memory::desc(dims{rows, cols}, type, dims{ld, 1});
}

// A shape's primitive, created once for the process: threads come and go (the
// plan's baseline starts a thread per micro-batch) and creating one JITs code.
// A primitive may run on several threads at once, each with its own memory
// objects and scratchpad.
struct SharedProduct {
  dnnl::matmul primitive;  // f32 empty: no brgemm kernel for the shape, use dnnl_sgemm
  dnnl::memory::desc a, b, c, bias, scratchpad;
};

class SharedProducts {
 public:
  static SharedProducts& instance() {
    static SharedProducts* const products = new SharedProducts;  // never destroyed: threads may outlive exit
    return *products;
  }

  const dnnl::engine& engine() const { return engine_; }

  // Takes a mutex only to create a shape's primitive (once per process) or
  // when the index is full: a thread that joins late (with more threads than
  // compute lanes, a different one each step) finds the shapes the others
  // made without one. ThreadProducts keeps the answer per thread.
  const SharedProduct& get(const ShapeKey& key) {
    const std::size_t hash = ShapeHash{}(key);
    if (const Entry* e = find(key, hash)) return *e->second;
    const std::lock_guard<std::mutex> lock(mutex_);
    auto found = products_.find(key);
    if (found == products_.end()) {
      found = products_.emplace(key, create(key)).first;
      publish(&*found, hash);
    }
    return *found->second;
  }

 private:
  SharedProducts() : engine_(dnnl::engine::kind::cpu, 0) {
    // This registry is the cache: oneDNN's own would only add sharing between
    // the workers, synchronized inside the library where TSan cannot see it.
    dnnl_set_primitive_cache_capacity(0);
  }

  using Map = std::unordered_map<ShapeKey, std::unique_ptr<SharedProduct>, ShapeHash>;
  using Entry = Map::value_type;  // a map node: its address never changes

  // The lock-free index over products_' entries: open addressing,
  // insert-only (a slot, once set, never changes), so a lookup may stop at
  // the first empty slot of its probe sequence.
  static constexpr std::size_t kSlots = 4096, kProbes = 32;

  const Entry* find(const ShapeKey& key, std::size_t hash) const {
    for (std::size_t i = 0; i < kProbes; ++i) {
      const Entry* e = index_[(hash + i) % kSlots].load(std::memory_order_acquire);
      if (e == nullptr || e->first == key) return e;
    }
    return nullptr;
  }

  // Under mutex_: only one thread writes the index.
  void publish(const Entry* e, std::size_t hash) {
    for (std::size_t i = 0; i < kProbes; ++i) {
      std::atomic<const Entry*>& slot = index_[(hash + i) % kSlots];
      if (slot.load(std::memory_order_relaxed) == nullptr) {
        slot.store(e, std::memory_order_release);  // after the primitive is complete
        return;
      }
    }
  }

  std::unique_ptr<SharedProduct> create(const ShapeKey& key) const {
    const GemmShape& s = key.s;
    auto p = std::make_unique<SharedProduct>();
    p->a = matrix_desc(s.trans_a ? s.k : s.m, s.trans_a ? s.m : s.k, s.lda, s.trans_a, key.operands);
    p->b = matrix_desc(s.trans_b ? s.n : s.k, s.trans_b ? s.k : s.n, s.ldb, s.trans_b, key.operands);
    p->c = matrix_desc(s.m, s.n, s.ldc, false, key.result);
    if (key.bias) p->bias = matrix_desc(1, s.n, s.n, false, dnnl::memory::data_type::f32);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // the thread's, sized once: no allocation per call
    if (s.alpha != 1.0f) attr.set_output_scales(0, {s.alpha});
    if (s.beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(s.beta);  // C = alpha * A B + beta * C
      attr.set_post_ops(ops);
    }
    const bool bf16 = key.operands == dnnl::memory::data_type::bf16;
    try {
      const dnnl::matmul::desc desc = key.bias ? dnnl::matmul::desc(p->a, p->b, p->bias, p->c)
                                               : dnnl::matmul::desc(p->a, p->b, p->c);
      const dnnl::matmul::primitive_desc pd(desc, attr, engine_);
      // bf16 takes whichever kernel oneDNN has (there is no dnnl_sgemm to fall back on)
      if (!bf16 && !std::string_view(pd.impl_info_str()).starts_with("brg")) return p;
      p->primitive = dnnl::matmul(pd);
      p->scratchpad = pd.scratchpad_desc();
    } catch (const dnnl::error& e) {
      // f32: no matmul for this shape, dnnl_sgemm takes it
      if (bf16) check(e.status, "bf16 matmul creation", s);
    }
    return p;
  }

  dnnl::engine engine_;
  std::array<std::atomic<const Entry*>, kSlots> index_{};
  std::mutex mutex_;  // guards products_
  Map products_;
};

// One per calling thread: its stream and scratchpad, and per shape its
// memory objects around the shared primitive. Once another thread has made a
// shape's primitive, running it takes no lock of ours; after a thread's first
// product of a shape it allocates nothing of ours either.
class ThreadProducts {
 public:
  ThreadProducts() : stream_(SharedProducts::instance().engine()) {}

  // Runs the product with f32 or bf16 operands a and b and result c (as key
  // says), and with key.bias the bias row.
  void run(const ShapeKey& key, const void* a, const void* b, void* c, const float* bias = nullptr) {
    const GemmShape& s = key.s;
    auto found = products_.find(key);
    if (found == products_.end()) found = products_.emplace(key, bind(SharedProducts::instance().get(key))).first;
    Product& p = found->second;
    if (!p.shared->primitive)
      return call_dnnl_sgemm(s, static_cast<const float*>(a), static_cast<const float*>(b), static_cast<float*>(c));
    // The C API: the C++ execute() builds an std::unordered_map per call.
    check(dnnl_memory_set_data_handle(p.a.get(), const_cast<void*>(a)), "set_data_handle", s);
    check(dnnl_memory_set_data_handle(p.b.get(), const_cast<void*>(b)), "set_data_handle", s);
    check(dnnl_memory_set_data_handle(p.c.get(), c), "set_data_handle", s);
    if (key.bias) check(dnnl_memory_set_data_handle(p.bias.get(), const_cast<float*>(bias)), "set_data_handle", s);
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, p.a.get()},
                                    {DNNL_ARG_WEIGHTS, p.b.get()},
                                    {DNNL_ARG_DST, p.c.get()},
                                    {DNNL_ARG_SCRATCHPAD, scratchpad_.get()},
                                    {DNNL_ARG_BIAS, key.bias ? p.bias.get() : nullptr}};
    check(dnnl_primitive_execute(p.shared->primitive.get(), stream_.get(), key.bias ? 5 : 4, args), "matmul execute",
          s);
  }

 private:
  struct Product {
    const SharedProduct* shared;
    dnnl::memory a, b, c, bias;
  };

  Product bind(const SharedProduct& shared) {
    Product p{&shared, {}, {}, {}, {}};
    if (!shared.primitive) return p;
    const dnnl::engine& engine = SharedProducts::instance().engine();
    p.a = dnnl::memory(shared.a, engine, DNNL_MEMORY_NONE);
    p.b = dnnl::memory(shared.b, engine, DNNL_MEMORY_NONE);
    p.c = dnnl::memory(shared.c, engine, DNNL_MEMORY_NONE);
    if (shared.bias.get_size() > 0) p.bias = dnnl::memory(shared.bias, engine, DNNL_MEMORY_NONE);
    const std::size_t bytes = std::max<std::size_t>(shared.scratchpad.get_size(), 1);
    if (!scratchpad_ || bytes > scratchpad_.get_desc().get_size()) {
      const dnnl::memory::dims size{static_cast<dnnl::memory::dim>(bytes)};
      scratchpad_ = dnnl::memory(dnnl::memory::desc(size, dnnl::memory::data_type::u8, dnnl::memory::dims{1}), engine);
    }
    return p;
  }

  dnnl::stream stream_;
  std::unordered_map<ShapeKey, Product, ShapeHash> products_;
  // One scratchpad for all of the thread's products (they run one at a time),
  // as large as the largest needs: the copies a product makes there stay in
  // the same few cache lines instead of one buffer per shape.
  dnnl::memory scratchpad_;
};

// brgemm repacks B on every call, which only pays off over enough rows of A:
// generating a token (the LM head, one row) ran slower through it than
// through dnnl_sgemm (`cllm generate` of 3,000 tokens, small: 0.204-0.209 s
// against 0.196-0.200 s).
constexpr int kBrgemmMinRowsForABt = 16;

bool runs_on_brgemm(const GemmShape& s) {
  const bool a_bt = s.trans_b && !s.trans_a && s.m >= kBrgemmMinRowsForABt;
  return s.lock_free || a_bt || static_cast<double>(s.m) * s.n * s.k <= matmul_max();
}

void use_one_openmp_thread() {
  thread_local const bool single_threaded = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)single_threaded;
}

ThreadProducts& thread_products() {
  thread_local ThreadProducts products;
  return products;
}

}  // namespace

void sgemm_onednn(const GemmShape& s, const float* a, const float* b, float* c) {
  use_one_openmp_thread();
  if (!runs_on_brgemm(s)) return call_dnnl_sgemm(s, a, b, c);
  thread_products().run(ShapeKey{s, dnnl::memory::data_type::f32}, a, b, c);
}

void gemm_bf16_onednn(const GemmShape& s, const bf16* a, const bf16* b, float* c) {
  use_one_openmp_thread();
  thread_products().run(ShapeKey{s, dnnl::memory::data_type::bf16}, a, b, c);
}

void gemm_bf16_rounded_onednn(const GemmShape& s, const bf16* a, const bf16* b, const float* bias, bf16* c) {
  use_one_openmp_thread();
  const ShapeKey key{s, dnnl::memory::data_type::bf16, dnnl::memory::data_type::bf16, bias != nullptr};
  thread_products().run(key, a, b, c, bias);
}

bool onednn_has_brgemm() {
  const GemmShape s{.trans_b = true, .m = 64, .n = 64, .k = 64, .lda = 64, .ldb = 64, .ldc = 64, .lock_free = true};
  return SharedProducts::instance().get(ShapeKey{s, dnnl::memory::data_type::f32}).primitive.get(true) != nullptr;
}

Bf16Support onednn_bf16_support() {
  const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const auto has = [isa](dnnl_cpu_isa_t wanted) { return (isa & wanted) == static_cast<unsigned>(wanted); };
  const std::string kernels = std::string(" (oneDNN ") + dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()) + " kernels)";
  if (has(dnnl_cpu_isa_avx512_core_amx)) return {true, "AMX-BF16" + kernels};
  if (has(dnnl_cpu_isa_avx512_core_bf16)) return {true, "AVX512_BF16" + kernels};
  return {false, "neither AMX-BF16 nor AVX512_BF16" + kernels};
}

std::string onednn_description() {
  const dnnl_version_t* v = dnnl_version();
  std::string paths = "brgemm matmul for attention and A B^T of 16+ rows, dnnl_sgemm for the rest";
  if (matmul_max() > 0) {
    char text[32];
    const std::string limit(text, std::to_chars(text, text + sizeof text, matmul_max()).ptr);
    paths = "brgemm matmul for attention, A B^T of 16+ rows and up to " + limit + " multiply-adds, dnnl_sgemm above";
  }
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
         " (" + paths + "), kernels for " + dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
}

}  // namespace cllm::kernels::detail
