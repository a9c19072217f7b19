// Internal: the MPI process group, or stand-ins when built without MPI.
#pragma once

#include <memory>

#include "dist/process_group.h"

namespace cllm::dist::detail {

bool mpi_built();
// Initialises MPI (funneled: only the thread that created the group calls
// MPI) and returns COMM_WORLD; finalizes MPI when destroyed.
std::unique_ptr<ProcessGroup> make_mpi_group();

}  // namespace cllm::dist::detail
