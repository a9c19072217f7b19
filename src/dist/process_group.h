// Processes training one model together (data parallelism): rank r of size P.
//
//   none: one process, no MPI at run time (the default).
//   mpi : Open MPI's COMM_WORLD, used when the process was started by mpirun
//         (OMPI_COMM_WORLD_SIZE or PMIX_RANK in the environment) or when asked
//         for explicitly; built only when CMake found MPI (CLLM_MPI).
//
// Every collective (blocking or not: a non-blocking one counts when it is
// started) must be called by all ranks in the same order with the same sizes.
// Results of allreduce_sum and iallreduce_sum are bitwise identical on every
// rank and, for a fixed P and MPI configuration, from run to run.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace cllm::dist {

class ProcessGroup {
 public:
  // A non-blocking collective in flight. Only the thread that started it may
  // test or wait for it (MPI is funneled). Destroying an unfinished request
  // abandons it (MPI cannot cancel a collective): only for a failed step,
  // whose process then aborts.
  class Request {
   public:
    virtual ~Request() = default;
    // True once the collective has completed on this rank; each call also
    // lets MPI progress it.
    virtual bool test() = 0;
    virtual void wait() = 0;
  };

  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view backend() const = 0;  // "none" or "mpi"
  // In place: data[i] = sum over ranks of data[i].
  virtual void allreduce_sum(float* data, std::size_t n) = 0;
  virtual void allreduce_sum(double* data, std::size_t n) = 0;
  // Starts allreduce_sum(data, n) and returns at once: data must not be read
  // or written until the request has completed.
  virtual std::unique_ptr<Request> iallreduce_sum(float* data, std::size_t n) = 0;
  // In place: every rank gets root's bytes.
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Prints "cllm: error: rank R of P: message" to stderr and ends every rank
  // with a non-zero exit code. Never returns.
  [[noreturn]] virtual void abort(std::string_view message) = 0;

  bool is_root() const { return rank() == 0; }
  // Every rank gets root's string (any length).
  void broadcast(std::string& text, int root);
};

enum class Backend { automatic, none, mpi };

// Parses "auto", "none" or "mpi"; throws std::invalid_argument naming the
// flag value otherwise.
Backend parse_backend(std::string_view name);
// True when this binary was built with MPI support.
bool mpi_available();
// True when the environment says mpirun started this process.
bool launched_by_mpirun();

// The process group of this process, created on first use: automatic means
// mpi when launched_by_mpirun(), else none. select() must come before the
// first world() call; asking for mpi in a build without it throws
// std::runtime_error. MPI is finalized at normal exit.
void select(Backend backend);
ProcessGroup& world();

// A single-process group (rank 0 of 1): collectives are no-ops (a request
// is complete at once).
std::unique_ptr<ProcessGroup> make_single_process_group();

}  // namespace cllm::dist
