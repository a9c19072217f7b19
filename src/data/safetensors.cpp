#include "data/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cllm::data {
namespace fs = std::filesystem;
using nlohmann::json;

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

// Larger headers are refused before allocating (the reference reader's limit).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

// Bytes per element of each safetensors dtype; 0 for an unknown one.
std::size_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"I64", 8}, {"U64", 8},
      {"F64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::uint64_t read_u64_le(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The entry's unsigned integer field, or an error naming tensor and field.
std::uint64_t unsigned_field(const fs::path& path, const std::string& name, const char* field, const json& v) {
  if (!v.is_number_unsigned())
    throw file_error(path, fmt::format("tensor '{}': {} must hold non-negative integers", name, field));
  return v.get<std::uint64_t>();
}

SafeTensor parse_entry(const fs::path& path, const std::string& name, const json& entry,
                       std::uint64_t data_begin, std::uint64_t data_size) {
  if (!entry.is_object()) throw file_error(path, fmt::format("tensor '{}': entry is not a JSON object", name));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) throw file_error(path, fmt::format("tensor '{}': missing \"{}\"", name, key));
  const json& dtype = entry["dtype"];
  const json& shape = entry["shape"];
  const json& offsets = entry["data_offsets"];
  if (!dtype.is_string()) throw file_error(path, fmt::format("tensor '{}': dtype is not a string", name));

  SafeTensor t;
  t.dtype = dtype.get<std::string>();
  const std::size_t elem = dtype_size(t.dtype);
  if (elem == 0) throw file_error(path, fmt::format("tensor '{}': unknown dtype '{}'", name, t.dtype));

  if (!shape.is_array()) throw file_error(path, fmt::format("tensor '{}': shape is not an array", name));
  std::uint64_t bytes = elem;
  bool overflow = false;
  for (const json& d : shape) {
    const std::uint64_t dim = unsigned_field(path, name, "shape", d);
    t.shape.push_back(static_cast<std::size_t>(dim));
    if (dim != 0 && bytes > std::numeric_limits<std::uint64_t>::max() / dim) overflow = true;
    else bytes *= dim;
  }
  if (overflow) throw file_error(path, fmt::format("tensor '{}': shape {} overflows", name, shape.dump()));

  if (!offsets.is_array() || offsets.size() != 2)
    throw file_error(path, fmt::format("tensor '{}': data_offsets must be [begin, end]", name));
  const std::uint64_t begin = unsigned_field(path, name, "data_offsets", offsets[0]);
  const std::uint64_t end = unsigned_field(path, name, "data_offsets", offsets[1]);
  if (begin > end)
    throw file_error(path, fmt::format("tensor '{}': data_offsets [{}, {}] end before they begin", name, begin, end));
  if (end > data_size)
    throw file_error(path, fmt::format("tensor '{}': data_offsets [{}, {}] exceed the {}-byte data region "
                                       "(file truncated or header lying)", name, begin, end, data_size));
  if (end - begin != bytes)
    throw file_error(path, fmt::format("tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}] "
                                       "span {}", name, shape.dump(), t.dtype, bytes, begin, end, end - begin));
  t.offset = data_begin + begin;
  t.nbytes = bytes;
  return t;
}

}  // namespace

std::size_t SafeTensor::numel() const {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  return n;
}

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  SafetensorsFile file(InputFile::open(path));
  const std::uint64_t file_size = file.file_.size();
  if (file_size < 8)
    throw file_error(path, fmt::format("is {} bytes, too short for a safetensors file (8-byte header length "
                                       "first)", file_size));
  unsigned char len_bytes[8];
  file.file_.read_at(0, len_bytes, 8);
  const std::uint64_t header_len = read_u64_le(len_bytes);
  if (header_len > file_size - 8)
    throw file_error(path, fmt::format("header length {} exceeds the {} bytes after it (not safetensors, or "
                                       "truncated)", header_len, file_size - 8));
  if (header_len > kMaxHeaderBytes)
    throw file_error(path, fmt::format("header length {} exceeds the {}-byte limit", header_len, kMaxHeaderBytes));
  if (header_len < 2) throw file_error(path, fmt::format("header length {} is too short for JSON", header_len));

  std::string header_text(static_cast<std::size_t>(header_len), '\0');
  file.file_.read_at(8, header_text.data(), header_text.size());
  json header = json::parse(header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) throw file_error(path, "header is not valid JSON");
  if (!header.is_object()) throw file_error(path, "header is not a JSON object");

  const std::uint64_t data_begin = 8 + header_len;
  const std::uint64_t data_size = file_size - data_begin;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw file_error(path, "__metadata__ is not a JSON object");
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string())
          throw file_error(path, fmt::format("__metadata__ value of '{}' is not a string", mkey));
        file.metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    file.tensors_[key] = parse_entry(path, key, value, data_begin, data_size);
  }

  // Tensors must tile the data region exactly: no overlap, no hole, no tail.
  std::vector<std::pair<std::uint64_t, const std::string*>> by_offset;
  for (const auto& [name, t] : file.tensors_) by_offset.emplace_back(t.offset, &name);
  std::sort(by_offset.begin(), by_offset.end());
  std::uint64_t expected = data_begin;
  const std::string* previous = nullptr;
  for (const auto& [offset, name] : by_offset) {
    const SafeTensor& t = file.tensors_.at(*name);
    if (offset < expected)
      throw file_error(path, fmt::format("tensor '{}' overlaps tensor '{}'", *name, previous ? *previous : ""));
    if (offset > expected)
      throw file_error(path, fmt::format("{} unused bytes before tensor '{}' (data region has holes)",
                                         offset - expected, *name));
    expected = offset + t.nbytes;
    previous = name;
  }
  if (expected != file_size)
    throw file_error(path, fmt::format("{} bytes after the last tensor are not described by the header",
                                       file_size - expected));
  return file;
}

const SafeTensor& SafetensorsFile::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw file_error(path(), fmt::format("no tensor named '{}'", name));
  return it->second;
}

const SafeTensor& SafetensorsFile::checked(const std::string& name, const char* dtype, std::size_t numel) const {
  const SafeTensor& t = tensor(name);
  if (t.dtype != dtype)
    throw file_error(path(), fmt::format("tensor '{}' has dtype {}, expected {}", name, t.dtype, dtype));
  if (t.numel() != numel)
    throw file_error(path(), fmt::format("tensor '{}' has {} elements, expected {}", name, t.numel(), numel));
  return t;
}

void SafetensorsFile::read_f32(const std::string& name, std::span<float> out) const {
  const SafeTensor& t = checked(name, "F32", out.size());
  file_.read_at(t.offset, out.data(), t.nbytes);
}

std::vector<float> SafetensorsFile::f32(const std::string& name) const {
  std::vector<float> out(tensor(name).numel());
  read_f32(name, out);
  return out;
}

std::vector<std::int32_t> SafetensorsFile::i32(const std::string& name) const {
  std::vector<std::int32_t> out(tensor(name).numel());
  const SafeTensor& t = checked(name, "I32", out.size());
  file_.read_at(t.offset, out.data(), t.nbytes);
  return out;
}

void write_safetensors(const fs::path& path, const std::map<std::string, std::string>& metadata,
                       std::span<const TensorToWrite> tensors) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      throw file_error(path, fmt::format("invalid tensor name '{}'", t.name));
    if (header.contains(t.name)) throw file_error(path, fmt::format("duplicate tensor name '{}'", t.name));
    std::uint64_t bytes = sizeof(float);
    for (std::size_t d : t.shape) bytes *= d;
    if (bytes > 0 && t.data == nullptr) throw file_error(path, fmt::format("tensor '{}' has no data", t.name));
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t header_len = text.size();

  AtomicFileWriter out(path);
  out.write(&header_len, sizeof header_len);
  out.write(text);
  for (const TensorToWrite& t : tensors) {
    std::size_t numel = 1;
    for (std::size_t d : t.shape) numel *= d;
    out.write(t.data, numel * sizeof(float));
  }
  out.commit();
}

}  // namespace cllm::data
