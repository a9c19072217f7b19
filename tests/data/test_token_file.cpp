#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>

#include "data/dataset.h"
#include "data/token_file.h"
#include "data/tokenizer.h"
#include "support/sanitizer_rss.h"
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
    const TokenizerRecord record{"gpt2", vocab, "fnv1a64:00000000000000ff"};
    write_token_file(p, tokens, record);
    const std::string json = R"({"name":"gpt2","vocab_hash":"fnv1a64:00000000000000ff","vocab_size":)" + std::to_string(vocab) + "}";
    EXPECT_EQ(std::filesystem::file_size(p), 32 + json.size() + ids.size() * (vocab <= 65536 ? 2 : 4));
    EXPECT_EQ(read_bytes(p).substr(32, json.size()), json);
    EXPECT_TRUE(is_token_file(p));
    const auto recorded = read_token_file_tokenizer(p);
    ASSERT_TRUE(recorded.has_value());
    EXPECT_EQ(recorded->name, "gpt2");
    EXPECT_EQ(recorded->vocab_size, vocab);
    EXPECT_EQ(recorded->vocab_hash, record.vocab_hash);
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
  EXPECT_EQ(t.width(), 4u);  // mapped as stored
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
  h.version = 3;
  expect_read_error(h, "", "version 3 is not supported (expected 1 or 2)");
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
  write_token_file(p, t, ByteTokenizer().record());
  const std::string before = read_bytes(p);
  const auto blocked = path("blocked.tok");
  std::filesystem::create_directory(path("blocked.tok.tmp"));  // the temporary cannot be created
  expect_error([&] { write_token_file(blocked, t, ByteTokenizer().record()); }, {blocked.string(), "cannot create"});
  EXPECT_EQ(read_bytes(p), before);
}

// Version 1 files (no tokenizer record) still load.
TEST_F(TokenFile, ReadsVersionOneWithoutARecord) {
  RawHeader h;
  h.count = 2;
  const std::uint16_t ids[2] = {104, 105};
  const auto p = raw(h, std::string_view(reinterpret_cast<const char*>(ids), sizeof ids));
  EXPECT_EQ(read_token_file_tokenizer(p), std::nullopt);
  const TokenArray t = read_token_file(p);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1], 105);
}

TEST_F(TokenFile, RejectsABadTokenizerRecord) {
  const std::uint16_t ids[1] = {7};
  const std::string_view tokens(reinterpret_cast<const char*>(ids), sizeof ids);
  RawHeader h;
  h.version = 2;
  h.count = 1;
  const auto with_record = [&](const std::string& record, std::uint32_t size) {
    RawHeader r = h;
    r.reserved = size;
    return raw(r, record + std::string(tokens));
  };
  for (const std::string& record : {std::string("not json"), std::string(R"({"name":"byte"})"),
                                    std::string(R"({"name":"","vocab_size":256,"vocab_hash":""})"),
                                    std::string(R"({"name":"byte","vocab_size":"256","vocab_hash":""})"), std::string("[1]")}) {
    const auto p = with_record(record, static_cast<std::uint32_t>(record.size()));
    expect_error([&] { read_token_file(p); }, {p.string(), "tokenizer record is not a JSON object"});
  }
  const std::string other_vocab = R"({"name":"byte","vocab_size":300,"vocab_hash":""})";
  const auto p = with_record(other_vocab, static_cast<std::uint32_t>(other_vocab.size()));
  expect_error([&] { read_token_file_tokenizer(p); }, {p.string(), "record says vocabulary 300", "header says 256"});
  expect_error([&] { read_token_file(with_record("", 0)); }, {"record size 0", "[1, 4096]"});
  expect_error([&] { read_token_file(with_record("", 5000)); }, {"record size 5000"});
  expect_error([&] { read_token_file(with_record("{}", 100)); }, {"too short for its 100-byte tokenizer record"});
  const std::string good = R"({"name":"byte","vocab_size":256,"vocab_hash":""})";
  const auto short_data = with_record(good + "x", static_cast<std::uint32_t>(good.size()));
  expect_error([&] { read_token_file(short_data); }, {"header says 1 tokens of 2 bytes but 3 data bytes follow"});
  TokenArray t(256);
  expect_error([&] { write_token_file(path("w.tok"), t, {"gpt2", 50257, ""}); }, {"w.tok", "vocabulary 50257", "tokens' 256"});
}

// A field of /proc/self/status in KiB, e.g. "RssAnon:".
std::int64_t status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with(field)) return std::stoll(line.substr(field.size()));
  ADD_FAILURE() << field << " not in /proc/self/status";
  return 0;
}

struct RssGrowth {
  std::int64_t anon_kib, file_kib;
};

// Writes a version 1 .tok file of `count` tokens i % vocab (no fsync: a
// scratch file), maps it and has a shuffled sampler fill every window of an
// epoch, checking each; the growth of RssAnon and RssFile meanwhile.
RssGrowth load_and_sample(const std::filesystem::path& p, std::uint64_t count) {
  constexpr std::uint32_t kVocab = 50257;
  constexpr int kSeq = 1024;
  {
    RawHeader h;
    h.count = count;
    h.vocab = kVocab;
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&h), sizeof h);
    std::vector<std::uint16_t> chunk(1 << 20);
    for (std::uint64_t begin = 0; begin < count; begin += chunk.size()) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), count - begin));
      for (std::size_t i = 0; i < n; ++i) chunk[i] = static_cast<std::uint16_t>((begin + i) % kVocab);
      out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(n * sizeof chunk[0]));
    }
    EXPECT_TRUE(out.good()) << p;
  }
  const std::int64_t anon = status_kib("RssAnon:"), file = status_kib("RssFile:");
  auto tokens = std::make_shared<const TokenArray>(read_token_file(p));
  const BatchSampler sampler({tokens, 0, count, p.string()}, kSeq, DataOrder::shuffled, 1);
  std::vector<std::int32_t> inputs(kSeq), targets(kSeq);
  std::uint64_t wrong = 0;
  for (std::uint64_t i = 0; i < sampler.sequences_per_epoch(); ++i) {
    sampler.fill(i, inputs.data(), targets.data());
    const std::uint64_t start = sampler.window_start(i);
    wrong += inputs[0] != static_cast<std::int32_t>(start % kVocab) ||
             targets[kSeq - 1] != static_cast<std::int32_t>((start + kSeq) % kVocab);
  }
  EXPECT_EQ(wrong, 0u) << p;
  return {status_kib("RssAnon:") - anon, status_kib("RssFile:") - file};
}

// A .tok corpus much larger than a training workspace is mapped, not read
// into memory: loading it and sampling windows from all of it grows the
// process's anonymous memory by the same few MiB whatever its size. The
// mapping's pages count in RssFile instead: page cache, which the kernel can
// drop and read again, so RssAnon is the honest measure of what holding a
// corpus costs.
TEST_F(TokenFile, MappedCorpusDoesNotGrowAnonymousMemory) {
  if (test::kSanitizerRss != nullptr) GTEST_SKIP() << test::kSanitizerRss;
  constexpr std::uint64_t kSmall = 16u << 20, kLarge = 4 * kSmall;  // tokens: 32 and 128 MiB
  const RssGrowth small = load_and_sample(path("small.tok"), kSmall);
  std::filesystem::remove(path("small.tok"));
  const RssGrowth large = load_and_sample(path("large.tok"), kLarge);
  std::cout << "RSS growth, " << kSmall * 2 / 1024 << " KiB of tokens: RssAnon +" << small.anon_kib << " KiB, RssFile +"
            << small.file_kib << " KiB; " << kLarge * 2 / 1024 << " KiB: RssAnon +" << large.anon_kib << " KiB, RssFile +"
            << large.file_kib << " KiB\n";
  const auto file_difference_kib = static_cast<std::int64_t>((kLarge - kSmall) * 2 / 1024);  // 96 MiB
  EXPECT_LT(large.anon_kib, small.anon_kib + file_difference_kib / 16);
}

}  // namespace
}  // namespace cllm::data
