// Fuzzes the checkpoint manifest reader: any input must parse or throw
// std::exception; a manifest that parses is checked against the files of the
// fuzzer's scratch directory (its names must stay inside it).
#include <cstddef>
#include <cstdint>
#include <exception>

#include "fuzz_input_file.h"
#include "train/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto dir = cllm::fuzz::input_file(cllm::train::kManifestName, data, size).parent_path();
  try {
    const auto manifest = cllm::train::read_manifest(dir);
    (void)cllm::train::manifest_mismatch(dir, manifest);
  } catch (const std::exception&) {
  }
  return 0;
}
