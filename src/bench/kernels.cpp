#include "bench/kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <stdexcept>

namespace cllm::bench {

namespace k = cllm::kernels;

// One kernel as benchmarked: how many buffers it reads or writes per call
// (plus the n_sources source buffers if it sums sources), and how to call
// it on buffers of n floats.
struct KernelWorkload {
  const char* kernel;
  bool sums_sources;
  std::size_t buffers_moved;
  void (*run)(const k::KernelTable& t, float* const* bufs, std::size_t n_sources, std::size_t n);
};

namespace {

using Workload = KernelWorkload;

// 64-byte aligned floats, written once by the calling thread so the pages
// are mapped (first touch) before anything is timed.
class FloatBuffer {
 public:
  explicit FloatBuffer(std::size_t n) {
    const std::size_t bytes = (std::max<std::size_t>(n, 1) * sizeof(float) + 63) / 64 * 64;
    data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    if (!data_) throw std::bad_alloc();
    std::fill_n(data_.get(), n, 1.0f);
  }
  float* get() const { return data_.get(); }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> data_;
};

// Keeps the reductions' results alive.
volatile double g_sink = 0.0;

const Workload kWorkloads[] = {
    {"zero", false, 1, [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) { t.zero(b[0], n); }},
    {"copy", false, 2, [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) { t.copy(b[0], b[1], n); }},
    {"add", false, 3, [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) { t.add(b[0], b[1], n); }},
    {"add_n", true, 1,  // reads the sources, writes dst
     [](const k::KernelTable& t, float* const* b, std::size_t ns, std::size_t n) {
       g_sink = g_sink + t.add_n(b[0], b + 1, ns, 0, n, false);
     }},
    {"scale", false, 2, [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) { t.scale(b[0], 1.0f, n); }},
    {"axpy", false, 3,
     [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) { t.axpy(b[0], 1e-6f, b[1], n); }},
    {"dot", false, 2,
     [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) { g_sink = g_sink + t.dot(b[0], b[1], n); }},
    {"sum_squares", false, 1,
     [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) {
       g_sink = g_sink + t.sum_squares(b[0], n);
     }},
    {"adamw", false, 7,  // reads p, g, m, v; writes p, m, v
     [](const k::KernelTable& t, float* const* b, std::size_t, std::size_t n) {
       t.adamw(b[0], b[1], b[2], b[3], n, k::AdamWParams{});
     }},
};

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of this thread: on a shared, busy machine it leaves out the time
// the benchmark was not running (memory contention still counts).
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Median over reps of the seconds one call takes, each rep timing `calls`
// back-to-back calls (many for in-cache sizes, so the clock resolves them).
template <class Fn>
double median_seconds_per_call(double (*now)(), int reps, std::size_t calls, const Fn& fn) {
  fn();  // warm-up: caches, page tables, branch predictors
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const double start = now();
    for (std::size_t c = 0; c < calls; ++c) fn();
    times.push_back((now() - start) / static_cast<double>(calls));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// "scalar,best" -> targets, in order, without repeats. "best" is the best
// usable target, "all" every usable one.
std::vector<k::Target> parse_targets(const std::string& list) {
  std::vector<k::Target> out;
  auto push = [&out](k::Target t) {
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  };
  std::stringstream in(list);
  std::string name;
  while (std::getline(in, name, ',')) {
    if (name == "best") {
      push(k::usable_targets().back());
    } else if (name == "all") {
      for (k::Target t : k::usable_targets()) push(t);
    } else {
      try {
        push(k::parse_target(name));
      } catch (const std::invalid_argument&) {
        throw std::invalid_argument("--targets: unknown target '" + name +
                                    "' (expected a comma-separated list of scalar, sse4, avx2, avx512, best, all)");
      }
    }
  }
  if (out.empty()) throw std::invalid_argument("--targets: empty list '" + list + "'");
  for (k::Target t : out) k::table_for(t);  // throws, naming it, if unusable
  return out;
}

// "add,add_n" -> the workloads named, in table order; "all" -> every one.
std::vector<const Workload*> parse_kernels(const std::string& list) {
  std::vector<std::string> names;
  std::stringstream in(list);
  for (std::string name; std::getline(in, name, ',');) names.push_back(name);
  std::vector<const Workload*> out;
  for (const Workload& w : kWorkloads)
    if (list == "all" || std::find(names.begin(), names.end(), w.kernel) != names.end()) out.push_back(&w);
  for (const std::string& name : names) {
    const bool known = std::any_of(std::begin(kWorkloads), std::end(kWorkloads),
                                   [&](const Workload& w) { return name == w.kernel; });
    if (!known && list != "all") {
      std::string expected;
      for (const Workload& w : kWorkloads) expected += std::string(expected.empty() ? "" : ", ") + w.kernel;
      throw std::invalid_argument("--kernels: unknown kernel '" + name + "' (expected all or a list of " +
                                  expected + ")");
    }
  }
  return out;
}

}  // namespace

KernelBench::KernelBench(const KernelBenchOptions& options) : o_(options) {
  const double mb = o_.mb > 0 ? o_.mb : (o_.quick ? 8.0 : 100.0);
  reps_ = o_.reps > 0 ? o_.reps : (o_.quick ? 3 : 5);
  if (o_.n_sources < 1 || o_.n_sources > 256)
    throw std::invalid_argument("--n-sources: " + std::to_string(o_.n_sources) + ", expected 1..256");
  targets_ = parse_targets(o_.targets);
  workloads_ = parse_kernels(o_.kernels);
  sizes_ = {static_cast<std::size_t>(mb * (1 << 20)) / sizeof(float), o_.cache_kb * 1024 / sizeof(float)};
  if (sizes_[0] == 0 || sizes_[1] == 0) throw std::invalid_argument("--mb and --cache-kb must be positive");
}

void KernelBench::run(const std::function<void(const KernelMeasurement&)>& report) const {
  double (*const now)() = o_.cpu_clock ? thread_cpu_seconds : wall_seconds;
  // Each rep of an in-cache measurement moves at least this much, so that it
  // lasts well over the clock's resolution.
  const double min_rep_bytes = o_.quick ? 32e6 : 256e6;

  for (std::size_t n : sizes_) {
    const std::size_t buffer_bytes = n * sizeof(float);
    std::vector<FloatBuffer> storage;
    std::vector<float*> bufs;
    for (std::size_t b = 0; b < std::max<std::size_t>(o_.n_sources + 1, 4); ++b) {
      storage.emplace_back(n);
      bufs.push_back(storage.back().get());
    }
    const auto calls_for = [&](std::size_t bytes) {
      return static_cast<std::size_t>(std::max(1.0, min_rep_bytes / static_cast<double>(bytes)));
    };
    const std::size_t memcpy_bytes = 2 * buffer_bytes;
    const double memcpy_seconds = median_seconds_per_call(
        now, reps_, calls_for(memcpy_bytes), [&] { std::memcpy(bufs[0], bufs[1], buffer_bytes); });
    const double memcpy_gbs = static_cast<double>(memcpy_bytes) / memcpy_seconds / 1e9;

    std::map<std::string, double> scalar_gbs;  // kernel -> GB/s on scalar
    auto measured = [&](const std::string& kernel, const std::string& target, std::size_t n_sources, std::size_t bytes,
                        double seconds, std::size_t calls) {
      const double gbs = static_cast<double>(bytes) / seconds / 1e9;
      if (target == "scalar") scalar_gbs[kernel] = gbs;
      const auto scalar_it = scalar_gbs.find(kernel);
      report({kernel, target, n_sources, buffer_bytes, bytes, seconds, gbs, memcpy_gbs,
              scalar_it == scalar_gbs.end() ? std::nullopt : std::optional<double>(scalar_it->second), reps_, calls});
    };
    measured("memcpy", "libc", 0, memcpy_bytes, memcpy_seconds, calls_for(memcpy_bytes));

    for (k::Target target : targets_) {
      const k::KernelTable& table = k::table_for(target);
      for (const Workload* w : workloads_) {
        const std::size_t n_sources = w->sums_sources ? o_.n_sources : 0;
        const std::size_t moved = w->buffers_moved + n_sources;
        const std::size_t bytes = moved * buffer_bytes;
        const std::size_t calls = calls_for(bytes);
        const double seconds =
            median_seconds_per_call(now, reps_, calls, [&] { w->run(table, bufs.data(), n_sources, n); });
        measured(w->kernel, std::string(k::target_name(target)), n_sources, bytes, seconds, calls);
      }
    }
  }
}

}  // namespace cllm::bench
