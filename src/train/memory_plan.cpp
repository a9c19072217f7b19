#include "train/memory_plan.h"

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace cllm::train {
namespace {

// "Key:   1234 kB" lines of /proc files; 0 when the key is missing.
std::size_t proc_kib(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string name;
  std::size_t value = 0;
  while (in >> name) {
    if (name == key + ":" && in >> value) return value;
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

// The cgroup v2 limit left for this process's group; 0 when unlimited or unknown.
std::size_t cgroup_room() {
  std::ifstream self("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(self, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  if (path.empty()) return 0;
  const std::string dir = "/sys/fs/cgroup" + path;
  std::ifstream max_file(dir + "/memory.max"), current_file(dir + "/memory.current");
  std::string max_text;
  std::size_t current = 0, max = 0;
  if (!(max_file >> max_text) || max_text == "max" || !(current_file >> current)) return 0;
  try {
    max = std::stoull(max_text);
  } catch (const std::exception&) {
    return 0;
  }
  return max > current ? max - current : 1;
}

}  // namespace

std::string format_bytes(std::size_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 0x1p30) return fmt::format("{:.1f} GiB", b / 0x1p30);
  if (b >= 0x1p20) return fmt::format("{:.1f} MiB", b / 0x1p20);
  if (b >= 0x1p10) return fmt::format("{:.1f} KiB", b / 0x1p10);
  return fmt::format("{} B", bytes);
}

std::size_t MemoryPlan::total() const {
  std::size_t n = resident;
  for (const MemoryPart& p : parts) n += p.total();
  return n;
}

std::string MemoryPlan::describe() const {
  std::string text = format_bytes(total()) + " planned (process " + format_bytes(resident);
  for (const MemoryPart& p : parts)
    text += ", " + p.name + " " + (p.count == 1 ? "" : std::to_string(p.count) + " x ") + format_bytes(p.bytes);
  return text + ")";
}

MemoryPlan plan_training_memory(const model::Config& config, std::size_t lane_rows, int seq, std::size_t lanes,
                                model::Precision precision) {
  const std::size_t n = config.num_params(), f32 = n * sizeof(float);
  MemoryPlan plan;
  plan.precision = precision;
  plan.resident = proc_kib("/proc/self/status", "VmRSS") * 1024;
  plan.parts.push_back({"params", 1, f32});
  if (precision == model::Precision::bf16) plan.parts.push_back({"bf16 weights", 1, n * sizeof(kernels::bf16)});
  plan.parts.push_back({"moments", 1, 2 * f32});
  // One gradient buffer per lane; the reduced gradient is summed into one of them.
  plan.parts.push_back({"grads", lanes, f32});
  plan.parts.push_back({"workspaces", lanes, model::Workspace::planned_bytes(config, static_cast<int>(lane_rows), seq, precision)});
  // fp32: an allowance for what glibc keeps of the GEMM library's freed
  // packing buffers in each thread's arena (oneDNN 2.6's AVX2 sgemm; little
  // on AVX-512): 1.5 x the MLP's (rows*T, 4d) f32 activation per lane, which
  // covers the runs of the memory-plan test on Zen 3 but not every shape
  // (docs/BENCHMARKS.md, section 6, has one it undercounts by 12%). bf16
  // products run on oneDNN matmul primitives instead, whose scratchpad is
  // one per thread and sized by the primitive (GPT-2 124M bf16 peaks under
  // its plan without the allowance: docs/BENCHMARKS.md, section 8).
  if (precision == model::Precision::fp32) {
    const std::size_t widest = lane_rows * static_cast<std::size_t>(seq) * 4 * config.dim;
    plan.parts.push_back({"gemm scratch", lanes, widest * sizeof(float) * 3 / 2});
  }
  const std::size_t kv = 2 * static_cast<std::size_t>(config.layers) * config.context * config.dim;
  plan.parts.push_back({"sampling", 1, (kv + static_cast<std::size_t>(config.vocab)) * sizeof(float)});
  return plan;
}

MemoryAvailable available_memory() {
  MemoryAvailable a;
  std::size_t free = proc_kib("/proc/meminfo", "MemAvailable") * 1024;
  if (free > 0) a.source = "MemAvailable";
  if (const std::size_t room = cgroup_room(); room > 0 && (free == 0 || room < free)) {
    free = room;
    a.source = "cgroup memory.max";
  }
  // The plan counts the process's own resident memory too.
  if (free > 0) a.bytes = free + proc_kib("/proc/self/status", "VmRSS") * 1024;
  return a;
}

void throw_out_of_memory(std::string_view what, std::string_view size, std::string_view context) {
  throw std::runtime_error(fmt::format("memory: out of memory allocating {} ({}{}{}). Use a smaller --batch or --seq, "
                                       "fewer --threads or a smaller model",
                                       what, size, context.empty() ? "" : "; ", context));
}

void throw_part_out_of_memory(const MemoryPlan& plan, std::string_view part) {
  std::string size = "?";
  for (const MemoryPart& p : plan.parts)
    if (p.name == part) size = (p.count == 1 ? "" : std::to_string(p.count) + " x ") + format_bytes(p.bytes);
  throw_out_of_memory(fmt::format("the {}", part), size,
                      fmt::format("{} planned in all, which fit in what the system said was available: a limit the "
                                  "plan does not see (ulimit -v) or memory other processes took since",
                                  format_bytes(plan.total())));
}

void check_memory_fits(const MemoryPlan& plan, const MemoryAvailable& available) {
  if (available.bytes == 0 || plan.total() <= available.bytes) return;
  std::vector<MemoryPart> largest = plan.parts;
  std::sort(largest.begin(), largest.end(), [](const MemoryPart& a, const MemoryPart& b) { return a.total() > b.total(); });
  std::string names;
  for (std::size_t i = 0; i < std::min<std::size_t>(2, largest.size()); ++i)
    names += (i ? ", " : "") + largest[i].name + " " + format_bytes(largest[i].total());
  throw std::runtime_error(fmt::format(
      "memory: the run needs {} but {} is available ({}); the largest parts: {}. Use a smaller --batch or --seq, "
      "fewer --threads{}",
      format_bytes(plan.total()), format_bytes(available.bytes), available.source, names,
      plan.precision == model::Precision::bf16 ? " or a smaller model"
                                               : ", a smaller model, or --precision bf16 where the CPU has it"));
}

}  // namespace cllm::train
