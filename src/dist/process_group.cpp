#include "dist/process_group.h"

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <fmt/core.h>

#include "dist/process_group_mpi.h"

namespace cllm::dist {
namespace {

class CompleteRequest final : public ProcessGroup::Request {
 public:
  bool test() override { return true; }
  void wait() override {}
};

class SingleProcessGroup final : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view backend() const override { return "none"; }
  void allreduce_sum(float*, std::size_t) override {}
  void allreduce_sum(double*, std::size_t) override {}
  std::unique_ptr<Request> iallreduce_sum(float*, std::size_t) override { return std::make_unique<CompleteRequest>(); }
  void broadcast(void*, std::size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(std::string_view message) override {
    fmt::print(stderr, "cllm: error: {}\n", message);
    std::fflush(stderr);
    std::_Exit(1);
  }
};

Backend selected = Backend::automatic;
std::unique_ptr<ProcessGroup>& world_slot() {
  static std::unique_ptr<ProcessGroup> group;  // destroyed (MPI finalized) at exit
  return group;
}

}  // namespace

void ProcessGroup::broadcast(std::string& text, int root) {
  std::uint64_t length = text.size();
  broadcast(&length, sizeof length, root);
  text.resize(length);
  broadcast(text.data(), length, root);
}

Backend parse_backend(std::string_view name) {
  if (name == "auto") return Backend::automatic;
  if (name == "none") return Backend::none;
  if (name == "mpi") return Backend::mpi;
  throw std::invalid_argument("--dist must be auto, none or mpi, got '" + std::string(name) + "'");
}

bool mpi_available() { return detail::mpi_built(); }

bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr; }

void select(Backend backend) {
  if (world_slot()) throw std::logic_error("dist::select() after the process group was created");
  selected = backend;
}

ProcessGroup& world() {
  auto& group = world_slot();
  if (!group) {
    const bool use_mpi = selected == Backend::mpi || (selected == Backend::automatic && launched_by_mpirun());
    if (use_mpi && !mpi_available())
      throw std::runtime_error(selected == Backend::mpi
                                   ? "--dist mpi: this cllm was built without MPI (install libopenmpi-dev and rebuild with -DCLLM_MPI=ON)"
                                   : "started by mpirun, but this cllm was built without MPI (install libopenmpi-dev and rebuild with -DCLLM_MPI=ON)");
    group = use_mpi ? detail::make_mpi_group() : make_single_process_group();
  }
  return *group;
}

std::unique_ptr<ProcessGroup> make_single_process_group() { return std::make_unique<SingleProcessGroup>(); }

}  // namespace cllm::dist
