#include "dist/process_group_mpi.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <mpi.h>

namespace cllm::dist::detail {
namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw std::runtime_error(fmt::format("MPI {} failed: {}", what, std::string(text, static_cast<std::size_t>(length))));
}

// MPI counts are ints: large buffers go in chunks.
constexpr std::size_t kChunk = std::size_t{1} << 30;

template <typename T>
void allreduce_chunks(T* data, std::size_t n, MPI_Datatype type) {
  for (std::size_t i = 0; i < n; i += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - i));
    check(MPI_Allreduce(MPI_IN_PLACE, data + i, count, type, MPI_SUM, MPI_COMM_WORLD), "allreduce");
  }
}

// One MPI request per chunk of an iallreduce_sum.
class MpiRequest final : public ProcessGroup::Request {
 public:
  explicit MpiRequest(std::vector<MPI_Request> requests) : requests_(std::move(requests)) {}
  bool test() override {
    int done = 0;
    check(MPI_Testall(count(), requests_.data(), &done, MPI_STATUSES_IGNORE), "test");
    return done != 0;
  }
  void wait() override { check(MPI_Waitall(count(), requests_.data(), MPI_STATUSES_IGNORE), "wait"); }

 private:
  int count() { return static_cast<int>(requests_.size()); }
  std::vector<MPI_Request> requests_;  // MPI_REQUEST_NULL once complete
};

class MpiGroup final : public ProcessGroup {
 public:
  MpiGroup() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
      owns_mpi_ = true;
    }
    // Errors come back as codes (turned into exceptions), not as a silent exit.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_mpi_ && !finalized) MPI_Finalize();
  }
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "mpi"; }
  void allreduce_sum(float* data, std::size_t n) override { allreduce_chunks(data, n, MPI_FLOAT); }
  void allreduce_sum(double* data, std::size_t n) override { allreduce_chunks(data, n, MPI_DOUBLE); }
  std::unique_ptr<Request> iallreduce_sum(float* data, std::size_t n) override {
    std::vector<MPI_Request> requests;
    for (std::size_t i = 0; i < n; i += kChunk) {
      const int count = static_cast<int>(std::min(kChunk, n - i));
      check(MPI_Iallreduce(MPI_IN_PLACE, data + i, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &requests.emplace_back()),
            "iallreduce");
    }
    return std::make_unique<MpiRequest>(std::move(requests));
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    auto* p = static_cast<char*>(data);
    for (std::size_t i = 0; i < bytes; i += kChunk) {
      const int count = static_cast<int>(std::min(kChunk, bytes - i));
      check(MPI_Bcast(p + i, count, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
    }
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "barrier"); }
  [[noreturn]] void abort(std::string_view message) override {
    fmt::print(stderr, "cllm: error: rank {} of {}: {}\n", rank_, size_, message);
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

 private:
  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
};

}  // namespace

bool mpi_built() { return true; }
std::unique_ptr<ProcessGroup> make_mpi_group() { return std::make_unique<MpiGroup>(); }

}  // namespace cllm::dist::detail
