// `cllm verify RUN_DIR`: checks every checkpoint of a run against its
// manifest and says which are intact; exit 0 only when the newest is.
#include <filesystem>
#include <memory>
#include <optional>

#include <fmt/core.h>

#include "cli/commands.h"
#include "data/file_io.h"
#include "train/checkpoint.h"

namespace cllm::cli {
namespace fs = std::filesystem;

void add_verify_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("verify", "Check every checkpoint of a run against its manifest (exit 0: the newest is intact)");
  auto run_dir = std::make_shared<fs::path>();
  cmd->add_option("RUN_DIR", *run_dir, "Run directory (the --out of cllm train)")->required();
  cmd->callback([run_dir] {
    if (!fs::is_directory(*run_dir))
      throw data::file_error(*run_dir, fs::exists(*run_dir) ? "is not a directory (expected a run directory, the --out of cllm train)"
                                                            : "no such directory (expected the --out of cllm train)");
    const train::CheckpointStore store(*run_dir);
    const auto all = store.checkpoints();
    const auto latest_problem = store.latest_problem();
    if (latest_problem) fmt::print("warning: {}\n", *latest_problem);
    if (all.empty()) throw data::file_error(store.dir(), "holds no checkpoints");
    std::optional<train::Checkpoint> newest_intact;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      const train::CheckpointCheck check = store.verify(*it);
      switch (check.health) {
        case train::CheckpointHealth::intact:
          fmt::print("{}: intact\n", it->dir.string());
          if (!newest_intact) newest_intact = *it;
          break;
        case train::CheckpointHealth::unverified:
          fmt::print("{}: unverified (no manifest: written by an older cllm)\n", it->dir.string());
          break;
        case train::CheckpointHealth::damaged:
          fmt::print("{}: damaged: {}\n", it->dir.string(), check.problem);
          break;
      }
    }
    if (newest_intact)
      fmt::print("{} checkpoints checked; newest intact: {} (step {})\n", all.size(), newest_intact->dir.string(),
                 newest_intact->step);
    else
      fmt::print("{} checkpoints checked; none is intact\n", all.size());
    if (!newest_intact || newest_intact->step != all.back().step) throw CLI::RuntimeError(1);
  });
}

}  // namespace cllm::cli
