// Checkpoint manifests (train/manifest.h): write, read back, find each kind
// of damage, and reject manifests that are malformed or name files outside
// their directory.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "train/manifest.h"

namespace cllm::train {
namespace {
namespace fs = std::filesystem;

class ManifestTest : public ::testing::Test {
 protected:
  ManifestTest() : dir_(fs::temp_directory_path() / ("cllm_manifest_" + std::to_string(::getpid()))) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write("a.bin", std::string(3000, 'a'));
    write("b.bin", "bee");
  }
  ~ManifestTest() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream(dir_ / name, std::ios::binary | std::ios::trunc) << bytes;
  }
  fs::path dir_;
};

TEST_F(ManifestTest, DigestOfTheEmptyFileIsXxh64sKnownValue) {
  write("empty", "");
  EXPECT_EQ(digest_file(dir_ / "empty"), (FileDigest{0, 0xef46db3751d8e999ull}));
}

TEST_F(ManifestTest, WrittenManifestReadsBackAndMatches) {
  write_manifest(dir_, {"a.bin", "b.bin"});
  const Manifest m = read_manifest(dir_);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("a.bin"), digest_file(dir_ / "a.bin"));
  EXPECT_EQ(m.at("b.bin").bytes, 3u);
  EXPECT_EQ(manifest_mismatch(dir_, m), "");
}

TEST_F(ManifestTest, EachDamageIsNamed) {
  write_manifest(dir_, {"a.bin", "b.bin"});
  const Manifest m = read_manifest(dir_);
  write("b.bin", "bea");  // same size, one byte changed
  EXPECT_NE(manifest_mismatch(dir_, m).find("b.bin': contents changed"), std::string::npos) << manifest_mismatch(dir_, m);
  write("b.bin", "be");
  EXPECT_NE(manifest_mismatch(dir_, m).find("b.bin': 2 bytes, the manifest says 3 (truncated)"), std::string::npos);
  write("b.bin", "beee");
  EXPECT_NE(manifest_mismatch(dir_, m).find("b.bin': 4 bytes, the manifest says 3 (overwritten or appended to)"),
            std::string::npos);
  fs::remove(dir_ / "b.bin");
  EXPECT_NE(manifest_mismatch(dir_, m).find("b.bin': missing (the manifest lists it)"), std::string::npos);
}

std::string parse_error(const std::string& text) {
  try {
    parse_manifest("m.json", text);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(parsed)";
}

std::string with_file(const std::string& name, const std::string& entry) {
  return R"({"format": "cllm-checkpoint-manifest", "version": 1, "files": {")" + name + "\": " + entry + "}}";
}

TEST(ParseManifest, RejectsMalformedManifestsNamingTheProblem) {
  const std::string good = R"({"bytes": 3, "xxh64": "0123456789abcdef"})";
  EXPECT_EQ(parse_manifest("m.json", with_file("a", good)).at("a"), (FileDigest{3, 0x0123456789abcdefull}));
  EXPECT_NE(parse_error("{").find("'m.json': is not valid JSON"), std::string::npos);
  EXPECT_NE(parse_error("[]").find("is not a cllm checkpoint manifest"), std::string::npos);
  EXPECT_NE(parse_error(R"({"format": "cllm-checkpoint-manifest", "version": 2, "files": {}})").find("unsupported manifest version 2"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"format": "cllm-checkpoint-manifest", "version": 1})").find("has no \"files\" object"),
            std::string::npos);
  for (const char* name : {"../a", "a/b", ".", "..", ""})
    EXPECT_NE(parse_error(with_file(name, good)).find("is not a plain name"), std::string::npos) << name;
  for (const char* entry : {R"({"bytes": -1, "xxh64": "0123456789abcdef"})", R"({"bytes": 1.5, "xxh64": "0123456789abcdef"})",
                            R"({"xxh64": "0123456789abcdef"})"})
    EXPECT_NE(parse_error(with_file("a", entry)).find("\"bytes\" must be a whole number"), std::string::npos) << entry;
  for (const char* entry : {R"({"bytes": 1, "xxh64": "0123456789ABCDEF"})", R"({"bytes": 1, "xxh64": "123"})",
                            R"({"bytes": 1, "xxh64": 5})", R"({"bytes": 1})", R"({"bytes": 1, "xxh64": "0123456789abcdeg"})"})
    EXPECT_NE(parse_error(with_file("a", entry)).find("\"xxh64\" must be 16 lowercase hex digits"), std::string::npos) << entry;
  EXPECT_NE(parse_error(with_file("a", "3")).find("expected an object"), std::string::npos);
}

}  // namespace
}  // namespace cllm::train
