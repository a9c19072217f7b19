// A checkpoint's manifest: OUT/checkpoints/step_NNNNNNNN/manifest.json lists
// every file of the checkpoint with its size and xxHash64, so a truncated,
// changed or missing file is found before it is loaded.
//
//   {"format": "cllm-checkpoint-manifest", "version": 1,
//    "files": {"model.safetensors": {"bytes": 123456, "xxh64": "0123456789abcdef"}, ...}}
//
// File names are plain names inside the checkpoint directory (no '/', not
// "." or ".."); the hash is 16 lowercase hex digits.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cllm::train {

inline constexpr const char* kManifestName = "manifest.json";

struct FileDigest {
  std::uint64_t bytes = 0;
  std::uint64_t xxh64 = 0;
  bool operator==(const FileDigest&) const = default;
};

// file name -> digest
using Manifest = std::map<std::string, FileDigest>;

// Size and xxHash64 of a regular file; throws naming the file when it cannot
// be read (missing, not a regular file, read error).
FileDigest digest_file(const std::filesystem::path& path);

// Hashes the files `names` of `dir` and writes dir/manifest.json crash-safely.
void write_manifest(const std::filesystem::path& dir, const std::vector<std::string>& names);

// Parses manifest text; throws std::runtime_error naming `path` when it is not
// JSON, not a manifest, of another version, or holds a bad file name, size or
// hash.
Manifest parse_manifest(const std::filesystem::path& path, std::string_view text);

// Reads and parses dir/manifest.json (at most 1 MiB).
Manifest read_manifest(const std::filesystem::path& dir);

// What is wrong with the files of `dir` against `manifest`, naming the file
// ("" when every file is there with its size and hash).
std::string manifest_mismatch(const std::filesystem::path& dir, const Manifest& manifest);

}  // namespace cllm::train
