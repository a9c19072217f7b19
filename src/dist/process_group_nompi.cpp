// Built instead of process_group_mpi.cpp when MPI is off or not found.
#include <stdexcept>

#include "dist/process_group_mpi.h"

namespace cllm::dist::detail {

bool mpi_built() { return false; }
std::unique_ptr<ProcessGroup> make_mpi_group() { throw std::logic_error("make_mpi_group() in a build without MPI"); }

}  // namespace cllm::dist::detail
