#include <cstring>

#include "data/token_file.h"
#include "test_util.h"

namespace cllm::data {
namespace {

using testing::expect_error;
using testing::read_bytes;
using testing::write_bytes;

struct RawHeader {
  char magic[8] = {'C', 'L', 'L', 'M', 'T', 'O', 'K', '1'};
  std::uint32_t version = 1, width = 2;
  std::uint64_t count = 0;
  std::uint32_t vocab = 256, reserved = 0;
};

class TokenFile : public testing::TempDirTest {
 protected:
  std::filesystem::path raw(const RawHeader& h, std::string_view data) {
    std::string bytes(reinterpret_cast<const char*>(&h), sizeof h);
    bytes += data;
    const auto p = path("t.tok");
    write_bytes(p, bytes);
    return p;
  }
  void expect_read_error(const RawHeader& h, std::string_view data, const std::string& problem) {
    const auto p = raw(h, data);
    expect_error([&] { read_token_file(p); }, {p.string(), problem});
  }
};

TEST_F(TokenFile, RoundTripsNarrowAndWide) {
  for (std::uint32_t vocab : {256u, 65536u, 70000u}) {
    TokenArray tokens(vocab);
    const std::vector<std::int32_t> ids = {0, 1, 255, static_cast<std::int32_t>(vocab - 1), 7};
    tokens.append(ids);
    const auto p = path("r.tok");
    write_token_file(p, tokens);
    EXPECT_EQ(std::filesystem::file_size(p), 32 + ids.size() * (vocab <= 65536 ? 2 : 4));
    EXPECT_TRUE(is_token_file(p));
    const TokenArray back = read_token_file(p);
    EXPECT_EQ(back.vocab_size(), vocab);
    ASSERT_EQ(back.size(), ids.size());
    std::vector<std::int32_t> out(ids.size());
    back.copy_to(0, ids.size(), out.data());
    EXPECT_EQ(out, ids);
    EXPECT_EQ(back[3], static_cast<std::int32_t>(vocab - 1));
  }
}

TEST_F(TokenFile, ReadsFourByteFileOfSmallVocabulary) {
  RawHeader h;
  h.width = 4;
  h.count = 3;
  const std::uint32_t ids[3] = {5, 255, 0};
  const auto p = raw(h, std::string_view(reinterpret_cast<const char*>(ids), sizeof ids));
  const TokenArray t = read_token_file(p);
  EXPECT_EQ(t.width(), 2u);
  EXPECT_EQ(t[1], 255);
}

TEST_F(TokenFile, AppendRejectsOutOfVocabulary) {
  TokenArray t(10);
  const std::vector<std::int32_t> bad = {3, 10};
  expect_error([&] { t.append(bad); }, {"token 10", "[0, 10)"});
  const std::vector<std::int32_t> negative = {-1};
  expect_error([&] { t.append(negative); }, {"token -1"});
  EXPECT_EQ(t.size(), 0u);
}

TEST_F(TokenFile, MissingDirectoryEmptyShort) {
  expect_error([&] { read_token_file(path("none.tok")); }, {"none.tok", "no such file"});
  expect_error([&] { read_token_file(dir_); }, {dir_.string(), "is a directory"});
  write_bytes(path("e.tok"), "");
  expect_error([&] { read_token_file(path("e.tok")); }, {"e.tok", "too short"});
  write_bytes(path("s.tok"), "CLLMTOK1\x01");
  expect_error([&] { read_token_file(path("s.tok")); }, {"s.tok", "too short"});
  EXPECT_FALSE(is_token_file(path("none.tok")));
  EXPECT_FALSE(is_token_file(path("e.tok")));
}

TEST_F(TokenFile, BadHeaderFields) {
  RawHeader h;
  h.magic[7] = '2';
  expect_read_error(h, "", "magic");
  h = {};
  h.version = 2;
  expect_read_error(h, "", "version 2");
  h = {};
  h.width = 3;
  expect_read_error(h, "", "width 3");
  h = {};
  h.vocab = 0;
  expect_read_error(h, "", "vocabulary size is 0");
  h = {};
  h.vocab = 70000;
  expect_read_error(h, "", "does not fit 2-byte");
  h = {};
  h.width = 4;
  h.vocab = 0x80000000u;
  expect_read_error(h, "", "int32");
  h = {};
  h.reserved = 1;
  expect_read_error(h, "", "reserved");
}

TEST_F(TokenFile, LyingCountAndTruncation) {
  RawHeader h;
  h.count = 4;
  expect_read_error(h, std::string(6, '\0'), "header says 4 tokens of 2 bytes but 6 data bytes follow");
  h.count = 2;
  expect_read_error(h, std::string(6, '\0'), "header says 2 tokens");
  h.count = ~0ull;
  expect_read_error(h, std::string(6, '\0'), "header says 18446744073709551615 tokens");
  h.count = 3;
  expect_read_error(h, std::string(5, '\0'), "truncated");
}

TEST_F(TokenFile, TokenOutOfVocabulary) {
  RawHeader h;
  h.count = 3;
  h.vocab = 100;
  const std::uint16_t ids[3] = {1, 99, 100};
  expect_read_error(h, std::string_view(reinterpret_cast<const char*>(ids), sizeof ids),
                    "token 100 at index 2 is not below the vocabulary size 100");
}

TEST_F(TokenFile, FailedWriteKeepsOldFile) {
  TokenArray t(256);
  const std::vector<std::int32_t> ids = {1, 2, 3};
  t.append(ids);
  const auto p = path("k.tok");
  write_token_file(p, t);
  const std::string before = read_bytes(p);
  const auto blocked = path("blocked.tok");
  std::filesystem::create_directory(path("blocked.tok.tmp"));  // the temporary cannot be created
  expect_error([&] { write_token_file(blocked, t); }, {blocked.string(), "cannot create"});
  EXPECT_EQ(read_bytes(p), before);
}

}  // namespace
}  // namespace cllm::data
