// The memory a training run will need, worked out before anything large is
// allocated: parameters, per-lane gradient buffers, AdamW moments, the bf16
// weight copy, per-lane workspaces and GEMM scratch, generation's KV cache, on top of what
// the process already holds (code, libraries, the loaded data). A run that
// would not fit in the memory available stops at once with one message
// instead of being killed by the kernel half-way.
#pragma once

#include <cstddef>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "model/gpt.h"

namespace cllm::train {

// 1536 -> "1.5 KiB", in the unit that suits the size.
std::string format_bytes(std::size_t bytes);

struct MemoryPart {
  std::string name;      // e.g. "workspaces"
  std::size_t count;     // e.g. one per lane
  std::size_t bytes;     // each
  std::size_t total() const { return count * bytes; }
};

struct MemoryPlan {
  model::Precision precision = model::Precision::fp32;
  std::size_t resident = 0;  // the process before the plan (VmRSS)
  std::vector<MemoryPart> parts;
  std::size_t total() const;
  // "3.1 GiB planned (process 0.1, params 0.5, grads 2 x 0.5, ...)"
  std::string describe() const;
};

// lane_rows: the sequences one lane's pass runs at most (--batch, or the
// piece of it parallel::split_work gives a lane), which sizes each workspace.
MemoryPlan plan_training_memory(const model::Config& config, std::size_t lane_rows, int seq, std::size_t lanes,
                                model::Precision precision);

// What the run may use: MemAvailable of /proc/meminfo, or less where the
// cgroup's memory.max says so. 0 bytes and an empty source when neither can be read.
struct MemoryAvailable {
  std::size_t bytes = 0;
  std::string source;  // "MemAvailable" or "cgroup memory.max"
};
MemoryAvailable available_memory();

// Throws std::runtime_error when the plan exceeds what is available, naming
// the largest parts and what to change. Does nothing when available.bytes is 0.
void check_memory_fits(const MemoryPlan& plan, const MemoryAvailable& available);

// Throws the std::runtime_error for a failed allocation of `what` (e.g.
// "the workspaces"), `size` bytes ("2 x 1.3 GiB"): what and how much, and
// what to change. `context` follows in parentheses when not empty.
[[noreturn]] void throw_out_of_memory(std::string_view what, std::string_view size, std::string_view context);

// make(), with a std::bad_alloc in it turned into throw_out_of_memory's
// error for `what` of `bytes`.
template <class Make>
decltype(auto) allocate_named(std::string_view what, std::size_t bytes, Make&& make) {
  try {
    return make();
  } catch (const std::bad_alloc&) {
    throw_out_of_memory(what, format_bytes(bytes), "");
  }
}

// The same for the plan's part `part`, where the plan fit but the
// allocation fails anyway (a limit the plan cannot see, such as ulimit -v,
// or memory taken since).
[[noreturn]] void throw_part_out_of_memory(const MemoryPlan& plan, std::string_view part);
template <class Make>
decltype(auto) allocate_part(const MemoryPlan& plan, std::string_view part, Make&& make) {
  try {
    return make();
  } catch (const std::bad_alloc&) {
    throw_part_out_of_memory(plan, part);
  }
}


}  // namespace cllm::train
