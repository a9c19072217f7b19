#include "train/manifest.h"

#include <xxhash.h>

#include <charconv>
#include <memory>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/file_io.h"

namespace cllm::train {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "cllm-checkpoint-manifest";
constexpr int kVersion = 1;
constexpr std::uint64_t kMaxManifestBytes = 1 << 20;
constexpr std::size_t kHashDigits = 16;

std::string hex(std::uint64_t value) { return fmt::format("{:016x}", value); }

bool plain_file_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

std::uint64_t parse_hash(const fs::path& path, const std::string& name, const nlohmann::json& value) {
  const std::string* text = value.is_string() ? value.get_ptr<const std::string*>() : nullptr;
  std::uint64_t hash = 0;
  bool ok = text && text->size() == kHashDigits;
  if (ok) {
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), hash, 16);
    ok = ec == std::errc{} && end == text->data() + text->size() && *text == hex(hash);
  }
  if (!ok) throw data::file_error(path, "file '" + name + "': \"xxh64\" must be 16 lowercase hex digits");
  return hash;
}

}  // namespace

FileDigest digest_file(const fs::path& path) {
  const auto file = data::InputFile::open(path);
  const std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> state(XXH64_createState(), XXH64_freeState);
  if (!state) throw std::bad_alloc();
  XXH64_reset(state.get(), 0);
  std::string buffer(std::size_t{1} << 20, '\0');
  for (std::uint64_t at = 0; at < file.size();) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), file.size() - at));
    file.read_at(at, buffer.data(), n);
    XXH64_update(state.get(), buffer.data(), n);
    at += n;
  }
  return {file.size(), XXH64_digest(state.get())};
}

void write_manifest(const fs::path& dir, const std::vector<std::string>& names) {
  nlohmann::json files = nlohmann::json::object();
  for (const std::string& name : names) {
    const FileDigest d = digest_file(dir / name);
    files[name] = {{"bytes", d.bytes}, {"xxh64", hex(d.xxh64)}};
  }
  const nlohmann::json manifest = {{"format", kFormat}, {"version", kVersion}, {"files", files}};
  data::AtomicFileWriter out(dir / kManifestName);
  out.write(manifest.dump(1) + "\n");
  out.commit();
}

Manifest parse_manifest(const fs::path& path, std::string_view text) {
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) throw data::file_error(path, "is not valid JSON (expected a cllm checkpoint manifest)");
  if (!json.is_object() || json.value("format", nlohmann::json()) != kFormat)
    throw data::file_error(path, std::string("is not a cllm checkpoint manifest (\"format\" must be \"") + kFormat + "\")");
  if (json.value("version", nlohmann::json()) != kVersion)
    throw data::file_error(path, fmt::format("unsupported manifest version {} (expected {})",
                                             json.value("version", nlohmann::json()).dump(), kVersion));
  const auto files = json.find("files");
  if (files == json.end() || !files->is_object()) throw data::file_error(path, "has no \"files\" object");
  Manifest manifest;
  for (const auto& [name, entry] : files->items()) {
    if (!plain_file_name(name))
      throw data::file_error(path, "file name '" + name + "' is not a plain name inside the checkpoint directory");
    if (!entry.is_object()) throw data::file_error(path, "file '" + name + "': expected an object with \"bytes\" and \"xxh64\"");
    const auto bytes = entry.find("bytes");
    if (bytes == entry.end() || !bytes->is_number_unsigned())
      throw data::file_error(path, "file '" + name + "': \"bytes\" must be a whole number >= 0");
    const auto hash = entry.find("xxh64");
    manifest[name] = {bytes->get<std::uint64_t>(), parse_hash(path, name, hash == entry.end() ? nlohmann::json() : *hash)};
  }
  return manifest;
}

Manifest read_manifest(const fs::path& dir) {
  const fs::path path = dir / kManifestName;
  return parse_manifest(path, data::InputFile::open(path).read_all(kMaxManifestBytes));
}

std::string manifest_mismatch(const fs::path& dir, const Manifest& manifest) {
  for (const auto& [name, want] : manifest) {
    const fs::path path = dir / name;
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(path, ec)))
      return fmt::format("'{}': missing (the manifest lists it)", path.string());
    FileDigest got;
    try {
      got = digest_file(path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    if (got.bytes != want.bytes)
      return fmt::format("'{}': {} bytes, the manifest says {} ({})", path.string(), got.bytes, want.bytes,
                         got.bytes < want.bytes ? "truncated" : "overwritten or appended to");
    if (got.xxh64 != want.xxh64)
      return fmt::format("'{}': contents changed (xxh64 {}, the manifest says {})", path.string(), hex(got.xxh64),
                         hex(want.xxh64));
  }
  return "";
}

}  // namespace cllm::train
