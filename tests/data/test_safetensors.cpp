#include <csignal>
#include <cstring>
#include <sys/resource.h>

#include "data/safetensors.h"
#include "test_util.h"

namespace cllm::data {
namespace {

using testing::expect_error;
using testing::read_bytes;
using testing::write_bytes;

class Safetensors : public testing::TempDirTest {
 protected:
  // A file of an 8-byte length, `header` and `data_bytes` bytes of data.
  std::filesystem::path raw(const std::string& header, std::size_t data_bytes, std::uint64_t stated_len = ~0ull) {
    const std::uint64_t len = stated_len == ~0ull ? header.size() : stated_len;
    std::string bytes(8, '\0');
    std::memcpy(bytes.data(), &len, 8);
    bytes += header;
    bytes.append(data_bytes, '\x01');
    const auto p = path("t.safetensors");
    write_bytes(p, bytes);
    return p;
  }
  std::string open_error(const std::string& header, std::size_t data_bytes) {
    const auto p = raw(header, data_bytes);
    try {
      SafetensorsFile::open(p);
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
      return msg;
    }
    ADD_FAILURE() << "opened: " << header;
    return "";
  }
};

TEST_F(Safetensors, RoundTripsTensorsAndMetadata) {
  const std::vector<float> a = {1.5f, -2.f, 3.f, 4.f, 5.f, 6.f};
  const std::vector<float> b = {7.f};
  const float unused = 0;
  const std::vector<TensorToWrite> tensors = {
      {"h.0.attn.c_attn.weight", {2, 3}, a.data()}, {"bias", {}, b.data()}, {"empty", {0, 4}, &unused}};
  const auto p = path("w.safetensors");
  write_safetensors(p, {{"format", "pt"}, {"n_layer", "1"}}, tensors);
  EXPECT_FALSE(std::filesystem::exists(path("w.safetensors.tmp")));

  const std::string bytes = read_bytes(p);
  std::uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header_len + (6 + 1) * sizeof(float));

  const SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("n_layer"), "1");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensor("h.0.attn.c_attn.weight").shape, (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(f.f32("h.0.attn.c_attn.weight"), a);
  EXPECT_EQ(f.f32("bias"), b);
  EXPECT_TRUE(f.tensor("bias").shape.empty());
  EXPECT_TRUE(f.f32("empty").empty());
  EXPECT_TRUE(f.has("bias"));
  EXPECT_FALSE(f.has("nope"));
  std::vector<float> out(6);
  f.read_f32("h.0.attn.c_attn.weight", out);
  EXPECT_EQ(out, a);
}

TEST_F(Safetensors, OverwritesCrashSafely) {
  const std::vector<float> a = {1.f, 2.f};
  const auto p = path("w.safetensors");
  write_safetensors(p, {}, std::vector<TensorToWrite>{{"a", {2}, a.data()}});
  const std::string before = read_bytes(p);
  // A failing write (duplicate name) leaves the old file whole and no temporary.
  expect_error([&] { write_safetensors(p, {}, std::vector<TensorToWrite>{{"a", {2}, a.data()}, {"a", {2}, a.data()}}); },
               {p.string(), "duplicate tensor name 'a'"});
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_FALSE(std::filesystem::exists(path("w.safetensors.tmp")));
}

TEST_F(Safetensors, WriteFailureMidFileThrowsAndKeepsOldFile) {
  std::vector<float> big(1 << 16, 1.f);
  const auto p = path("w.safetensors");
  write_safetensors(p, {}, std::vector<TensorToWrite>{{"a", {2}, big.data()}});
  const std::string before = read_bytes(p);
  // Stands in for a full disk: writes past 4 KiB fail with EFBIG.
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit old_limit{};
  getrlimit(RLIMIT_FSIZE, &old_limit);
  rlimit limit = old_limit;
  limit.rlim_cur = 4096;
  setrlimit(RLIMIT_FSIZE, &limit);
  expect_error([&] { write_safetensors(p, {}, std::vector<TensorToWrite>{{"a", {big.size()}, big.data()}}); },
               {p.string(), "write failed"});
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_FALSE(std::filesystem::exists(path("w.safetensors.tmp")));
}

TEST_F(Safetensors, UnwritableDirectoryNamesFile) {
  const std::vector<float> a = {1.f};
  const auto p = path("missing_dir") / "w.safetensors";
  expect_error([&] { write_safetensors(p, {}, std::vector<TensorToWrite>{{"a", {1}, a.data()}}); },
               {p.string(), "cannot create"});
}

TEST_F(Safetensors, ReadsHuggingFaceStyleHeader) {
  // Keys out of offset order, metadata {"format":"pt"}, an I32 fixture and
  // a non-F32 buffer that is parsed but refused when read as F32.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"wte.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
      R"("ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"h.0.attn.bias":{"dtype":"F16","shape":[1],"data_offsets":[24,26]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  const std::uint64_t len = padded.size();
  std::memcpy(bytes.data(), &len, 8);
  bytes += padded;
  const std::int32_t ids[2] = {7, -3};
  const float w[4] = {1, 2, 3, 4};
  bytes.append(reinterpret_cast<const char*>(ids), 8);
  bytes.append(reinterpret_cast<const char*>(w), 16);
  bytes.append("\0\0", 2);
  const auto p = path("hf.safetensors");
  write_bytes(p, bytes);
  const SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.i32("ids"), (std::vector<std::int32_t>{7, -3}));
  EXPECT_EQ(f.f32("wte.weight"), (std::vector<float>{1, 2, 3, 4}));
  expect_error([&] { f.f32("h.0.attn.bias"); }, {p.string(), "'h.0.attn.bias' has dtype F16, expected F32"});
  expect_error([&] { f.i32("wte.weight"); }, {p.string(), "dtype F32, expected I32"});
  std::vector<float> wrong(3);
  expect_error([&] { f.read_f32("wte.weight", wrong); }, {p.string(), "has 4 elements, expected 3"});
  expect_error([&] { f.f32("lm_head.weight"); }, {p.string(), "no tensor named 'lm_head.weight'"});
}

TEST_F(Safetensors, MissingFileAndDirectory) {
  expect_error([&] { SafetensorsFile::open(path("nope.safetensors")); }, {"nope.safetensors", "no such file"});
  expect_error([&] { SafetensorsFile::open(dir_); }, {dir_.string(), "is a directory"});
}

TEST_F(Safetensors, EmptyAndShortFiles) {
  write_bytes(path("e"), "");
  expect_error([&] { SafetensorsFile::open(path("e")); }, {path("e").string(), "too short"});
  write_bytes(path("s"), "1234567");
  expect_error([&] { SafetensorsFile::open(path("s")); }, {path("s").string(), "too short"});
}

TEST_F(Safetensors, LyingHeaderLength) {
  auto p = raw("{}", 0, 1000);
  expect_error([&] { SafetensorsFile::open(p); }, {p.string(), "header length 1000 exceeds the 2 bytes"});
  p = raw("{}", 0, 1ull << 62);
  expect_error([&] { SafetensorsFile::open(p); }, {p.string(), "exceeds"});
  // A sparse file large enough that the length is within it, but over the limit.
  p = raw("{}", 0, 150'000'000);
  std::filesystem::resize_file(p, 8 + 150'000'000);
  expect_error([&] { SafetensorsFile::open(p); }, {p.string(), "100000000-byte limit"});
}

TEST_F(Safetensors, BadHeaders) {
  EXPECT_NE(open_error("{not json", 0).find("not valid JSON"), std::string::npos);
  EXPECT_NE(open_error("[1, 2]", 0).find("not a JSON object"), std::string::npos);
  EXPECT_NE(open_error(R"({"__metadata__":{"a":1}})", 0).find("value of 'a' is not a string"), std::string::npos);
  EXPECT_NE(open_error(R"({"__metadata__":[]})", 0).find("__metadata__ is not a JSON object"), std::string::npos);
  EXPECT_NE(open_error(R"({"x":3})", 0).find("'x': entry is not a JSON object"), std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", 4).find("missing \"dtype\""), std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","data_offsets":[0,4]}})", 4).find("missing \"shape\""), std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", 4).find("unknown dtype 'Q4'"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4).find("non-negative"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4).find("non-negative"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)
                .find("overflows"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4).find("[begin, end]"),
            std::string::npos);
}

TEST_F(Safetensors, ShapeSizeMismatch) {
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)
                .find("needs 12 bytes but data_offsets [0, 8] span 8"),
            std::string::npos);
}

TEST_F(Safetensors, LyingOffsets) {
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)
                .find("exceed the 4-byte data region"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8).find("end before they begin"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}})", 4)
                .find("exceed"),
            std::string::npos);
}

TEST_F(Safetensors, OverlapsHolesAndTrailingBytes) {
  EXPECT_NE(open_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       12)
                .find("overlaps"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8).find("holes"),
            std::string::npos);
  EXPECT_NE(open_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12).find("after the last tensor"),
            std::string::npos);
}

TEST_F(Safetensors, TruncatedFile) {
  const std::vector<float> a(100, 2.f);
  const auto p = path("w.safetensors");
  write_safetensors(p, {}, std::vector<TensorToWrite>{{"a", {100}, a.data()}});
  std::filesystem::resize_file(p, std::filesystem::file_size(p) - 4);
  expect_error([&] { SafetensorsFile::open(p); }, {p.string(), "exceed"});
}

}  // namespace
}  // namespace cllm::data
