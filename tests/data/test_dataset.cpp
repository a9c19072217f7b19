#include <set>
#include <thread>

#include "data/dataset.h"
#include "gpt2_small_vocab.h"
#include "test_util.h"

namespace cllm::data {
namespace {

using testing::expect_error;
using testing::read_bytes;
using testing::write_bytes;

// A byte tokenizer that, like gpt2, insists on UTF-8 input.
class Utf8ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "utf8-byte"; }
  int vocab_size() const override { return 256; }
  std::vector<std::int32_t> encode(std::string_view text) const override { return ByteTokenizer().encode(text); }
  std::string decode(std::span<const std::int32_t> t) const override { return ByteTokenizer().decode(t); }
  std::vector<std::int32_t> document_separator() const override { return {'|'}; }
  bool requires_utf8() const override { return true; }
  TokenizerRecord record() const override { return {name(), 256, ""}; }
  std::size_t stream_cut(std::string_view text) const override { return text.size(); }
};

std::string as_text(const TokenArray& t) {
  std::vector<std::int32_t> ids(t.size());
  t.copy_to(0, ids.size(), ids.data());
  return ByteTokenizer().decode(ids);
}

class DatasetTest : public testing::TempDirTest {};

TEST_F(DatasetTest, LoadsTextFile) {
  write_bytes(path("a.txt"), "hello");
  const LoadedTokens t = load_tokens(path("a.txt"), ByteTokenizer());
  EXPECT_EQ(as_text(t.tokens), "hello");
  EXPECT_EQ(t.files.size(), 1u);
}

TEST_F(DatasetTest, LoadsDirectorySortedWithSeparatorsSkippingBinary) {
  std::filesystem::create_directory(path("d"));
  write_bytes(path("d/b.txt"), "bee");
  write_bytes(path("d/a.txt"), "ay");
  write_bytes(path("d/a.dat"), std::string("\x01\x00\x02", 3));
  write_bytes(path("d/c.txt"), "");
  write_bytes(path("d/e.txt"), "caf\xc3\xa9");
  write_bytes(path("d/f.txt"), "bad\xff");
  std::filesystem::create_symlink("a.txt", path("d/z.u8"));  // same file as a.txt: read once
  std::filesystem::create_directory(path("d/sub"));
  write_bytes(path("d/sub/x.txt"), "not read");
  const LoadedTokens bytes = load_tokens(path("d"), ByteTokenizer());
  EXPECT_EQ(as_text(bytes.tokens), "ay\nbee\ncaf\xc3\xa9\nbad\xff");
  EXPECT_EQ(bytes.skipped, (std::vector<std::filesystem::path>{path("d/a.dat")}));
  const LoadedTokens utf8 = load_tokens(path("d"), Utf8ByteTokenizer());
  EXPECT_EQ(as_text(utf8.tokens), "ay|bee|caf\xc3\xa9");
  EXPECT_EQ(utf8.skipped, (std::vector<std::filesystem::path>{path("d/a.dat"), path("d/f.txt")}));
}

TEST_F(DatasetTest, RejectsBadInputs) {
  expect_error([&] { load_tokens(path("none"), ByteTokenizer()); }, {"none", "no such file or directory"});
  write_bytes(path("empty.txt"), "");
  expect_error([&] { load_tokens(path("empty.txt"), ByteTokenizer()); }, {"empty.txt", "is empty"});
  write_bytes(path("bin"), std::string("ab\0c", 4));
  expect_error([&] { load_tokens(path("bin"), ByteTokenizer()); }, {"bin", "NUL byte at offset 2", "not text"});
  write_bytes(path("latin1.txt"), "caf\xe9");
  EXPECT_EQ(load_tokens(path("latin1.txt"), ByteTokenizer()).tokens.size(), 4u);
  expect_error([&] { load_tokens(path("latin1.txt"), Utf8ByteTokenizer()); },
               {"latin1.txt", "not valid UTF-8", "offset 3", "utf8-byte tokenizer"});
  std::filesystem::create_directory(path("bindir"));
  write_bytes(path("bindir/x.dat"), std::string("\0", 1));
  expect_error([&] { load_tokens(path("bindir"), ByteTokenizer()); }, {"bindir", "no non-empty text files", "1 skipped"});
}

TEST_F(DatasetTest, LoadsTokenFilesAndChecksVocabulary) {
  TokenArray t(256);
  const std::vector<std::int32_t> ids = {'h', 'i'};
  t.append(ids);
  write_token_file(path("x.tok"), t, ByteTokenizer().record());
  EXPECT_EQ(as_text(load_tokens(path("x.tok"), ByteTokenizer()).tokens), "hi");
  std::filesystem::copy_file(path("x.tok"), path("x.bin"));  // found by magic too
  EXPECT_EQ(as_text(load_tokens(path("x.bin"), ByteTokenizer()).tokens), "hi");
  TokenArray big(50257);
  big.append(ids);
  write_token_file(path("g.tok"), big, {"gpt2", 50257, "fnv1a64:0123456789abcdef"});
  expect_error([&] { load_tokens(path("g.tok"), ByteTokenizer()); },
               {"g.tok", "records the tokenizer gpt2 (vocabulary 50257, vocabulary files fnv1a64:0123456789abcdef)",
                "the tokenizer given is byte (vocabulary 256)"});
  // A version 1 file records no tokenizer: its vocabulary size is checked.
  std::string v1("CLLMTOK1\x01\0\0\0\x02\0\0\0\x01\0\0\0\0\0\0\0\x51\xc4\0\0\0\0\0\0hi", 34);
  write_bytes(path("v1.tok"), v1);
  expect_error([&] { load_tokens(path("v1.tok"), ByteTokenizer()); }, {"v1.tok", "vocabulary size 50257", "has 256"});
  write_bytes(path("bad.tok"), "hello, not tokens, long enough for a header.......");
  expect_error([&] { load_tokens(path("bad.tok"), ByteTokenizer()); }, {"bad.tok", "magic"});
}

// Text whose pieces, read a few bytes at a time, end everywhere: inside 2-,
// 3- and 4-byte characters, in runs of spaces and newlines, inside
// contractions, words the vocabulary merges with their leading space, and
// white space at the very end.
const std::string kTricky =
    "Hello  world\n\ncaf\u00e9 \u65e5\u672c  \U0001F600!\nit's   the cat's\t\tmat 12345 \n \n  "
    "\u3000x the\u00a0and\n\n\n caf\u00e9\u65e5\u672c   ";

// The .tok file of the texts encoded whole, the separator between them.
std::string whole_token_file(const std::vector<std::string>& texts, const Tokenizer& tokenizer,
                             const std::filesystem::path& p) {
  TokenArray tokens(static_cast<std::uint32_t>(tokenizer.vocab_size()));
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (i > 0) tokens.append(tokenizer.document_separator());
    tokens.append(tokenizer.encode(texts[i]));
  }
  write_token_file(p, tokens, tokenizer.record());
  return read_bytes(p);
}

TEST_F(DatasetTest, TokenizeStreamsTheSameTokensAsEncodingWholeFiles) {
  fuzz::write_small_gpt2_vocab(dir_);
  const auto gpt2 = Gpt2Tokenizer::load(path("encoder.json"), path("vocab.bpe"));
  const ByteTokenizer byte;
  const std::string second = "second\n\n doc  ", latin1 = "caf\xe9 ok";
  write_bytes(path("one.txt"), kTricky);
  std::filesystem::create_directory(path("docs"));
  write_bytes(path("docs/1.txt"), kTricky);
  write_bytes(path("docs/2.bin"), std::string("ab\0c", 4));
  write_bytes(path("docs/3.txt"), latin1);  // not UTF-8: gpt2 skips it
  write_bytes(path("docs/4.txt"), second);
  using Paths = std::vector<std::filesystem::path>;
  for (const Tokenizer* tokenizer : {static_cast<const Tokenizer*>(&byte), static_cast<const Tokenizer*>(gpt2.get())}) {
    const bool utf8 = tokenizer->requires_utf8();
    const std::string one = whole_token_file({kTricky}, *tokenizer, path("whole.tok"));
    const std::string docs = whole_token_file(utf8 ? std::vector{kTricky, second} : std::vector{kTricky, latin1, second},
                                              *tokenizer, path("whole.tok"));
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5}, std::size_t{7},
                                    std::size_t{64}, kTokenizeChunkBytes}) {
      SCOPED_TRACE(tokenizer->name() + ", chunks of " + std::to_string(chunk) + " bytes");
      const TokenizedText file = tokenize_to_file(path("one.txt"), *tokenizer, path("s.tok"), chunk);
      EXPECT_EQ(read_bytes(path("s.tok")), one);
      EXPECT_EQ(file.files, Paths{path("one.txt")});
      const TokenizedText dir = tokenize_to_file(path("docs"), *tokenizer, path("s.tok"), chunk);
      EXPECT_EQ(read_bytes(path("s.tok")), docs);
      EXPECT_EQ(dir.files, utf8 ? (Paths{path("docs/1.txt"), path("docs/4.txt")})
                                : (Paths{path("docs/1.txt"), path("docs/3.txt"), path("docs/4.txt")}));
      EXPECT_EQ(dir.skipped, utf8 ? (Paths{path("docs/2.bin"), path("docs/3.txt")}) : Paths{path("docs/2.bin")});
      EXPECT_EQ(dir.tokens, read_token_file(path("s.tok")).size());
    }
  }
  // The text checks see offsets in the whole file, and a NUL byte is named
  // before invalid UTF-8 even when a piece before it holds the latter.
  write_bytes(path("bad.txt"), std::string("\xff" "abc\0", 5));
  expect_error([&] { tokenize_to_file(path("bad.txt"), *gpt2, path("s.tok"), 1); }, {"bad.txt", "NUL byte at offset 4"});
  write_bytes(path("latin1.txt"), latin1);
  expect_error([&] { tokenize_to_file(path("latin1.txt"), *gpt2, path("s.tok"), 1); },
               {"latin1.txt", "not valid UTF-8 (first bad byte at offset 3)"});
  write_token_file(path("x.tok"), TokenArray(256), byte.record());
  expect_error([&] { tokenize_to_file(path("x.tok"), byte, path("s.tok")); }, {"x.tok", "is already a token file"});
}

TEST_F(DatasetTest, SplitsValidationFromTheEnd) {
  write_bytes(path("a.txt"), "0123456789");
  const Dataset ds = Dataset::load({path("a.txt"), {}, 0.3}, ByteTokenizer());
  EXPECT_EQ(ds.train.begin, 0u);
  EXPECT_EQ(ds.train.size, 7u);
  EXPECT_EQ(ds.validation.begin, 7u);
  EXPECT_EQ(ds.validation.size, 3u);
  EXPECT_EQ((*ds.validation.tokens)[7], '7');
  EXPECT_EQ(Dataset::load({path("a.txt"), {}, 0.0}, ByteTokenizer()).validation.size, 0u);
  expect_error([&] { Dataset::load({path("a.txt"), {}, 1.0}, ByteTokenizer()); }, {"fraction 1", "[0, 1)"});

  write_bytes(path("v.txt"), "abc");
  const Dataset sep = Dataset::load({path("a.txt"), path("v.txt"), 0.3}, ByteTokenizer());
  EXPECT_EQ(sep.train.size, 10u);
  EXPECT_EQ(sep.validation.size, 3u);
  EXPECT_EQ((*sep.validation.tokens)[0], 'a');
  EXPECT_NE(sep.validation.source.find("v.txt"), std::string::npos);
}

// Tokens 0..n-1 (values mod 256), so a token's value tells its position.
TokenSpan counting_span(std::uint64_t n, std::uint64_t begin = 0) {
  auto a = std::make_shared<TokenArray>(65536);
  std::vector<std::int32_t> ids(begin + n);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i % 65536);
  a->append(ids);
  return {a, begin, n, "test tokens"};
}

TEST(BatchSampler, SequentialFollowsTheDefinition) {
  const int T = 4;
  const BatchSampler s(counting_span(23, 5), T, DataOrder::sequential, 99);
  EXPECT_EQ(s.sequences_per_epoch(), 5u);  // floor((23 - 1) / 4)
  std::vector<std::int32_t> in(T), tg(T);
  for (std::uint64_t i = 0; i < 17; ++i) {
    const std::uint64_t start = (i * T) % (5 * T);
    EXPECT_EQ(s.window_start(i), start);
    s.fill(i, in.data(), tg.data());
    for (int t = 0; t < T; ++t) {
      EXPECT_EQ(in[static_cast<std::size_t>(t)], static_cast<std::int32_t>(5 + start + static_cast<std::uint64_t>(t)));
      EXPECT_EQ(tg[static_cast<std::size_t>(t)], in[static_cast<std::size_t>(t)] + 1);
    }
  }
  // The last window ends exactly at the last predicted token, inside the span.
  EXPECT_EQ(s.window_start(4) + T, 20u);
}

TEST(BatchSampler, ShuffledVisitsEveryWindowOncePerEpochDeterministically) {
  const int T = 3;
  for (std::uint64_t n : {4u, 5u, 17u, 1000u, 4099u}) {
    const BatchSampler a(counting_span(n), T, DataOrder::shuffled, 7);
    const BatchSampler b(counting_span(n), T, DataOrder::shuffled, 7);
    const BatchSampler other_seed(counting_span(n), T, DataOrder::shuffled, 8);
    const std::uint64_t E = a.sequences_per_epoch();
    ASSERT_EQ(E, (n - 1) / T);
    std::vector<std::uint64_t> epoch0, epoch1, seed8;
    for (std::uint64_t i = 0; i < E; ++i) {
      epoch0.push_back(a.window_start(i));
      epoch1.push_back(a.window_start(E + i));
      seed8.push_back(other_seed.window_start(i));
      EXPECT_EQ(a.window_start(i), b.window_start(i));
    }
    for (const auto* order : {&epoch0, &epoch1, &seed8}) {
      std::set<std::uint64_t> starts(order->begin(), order->end());
      ASSERT_EQ(starts.size(), E) << "n=" << n;
      EXPECT_EQ(*starts.rbegin(), (E - 1) * T);
      for (std::uint64_t s : starts) EXPECT_EQ(s % T, 0u);
    }
    if (E >= 10) {
      EXPECT_NE(epoch0, epoch1) << "epochs should be shuffled differently";
      EXPECT_NE(epoch0, seed8) << "seeds should shuffle differently";
    }
  }
}

TEST(BatchSampler, FillIsThreadSafeAndMatchesSerial) {
  const int T = 8;
  const BatchSampler s(counting_span(10000), T, DataOrder::shuffled, 3);
  std::vector<std::int32_t> serial(200 * T), parallel(200 * T), targets(T);
  for (std::uint64_t i = 0; i < 200; ++i) s.fill(i, serial.data() + i * T, targets.data());
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      std::vector<std::int32_t> tg(T);
      for (std::uint64_t i = static_cast<std::uint64_t>(w); i < 200; i += 4) s.fill(i, parallel.data() + i * T, tg.data());
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(serial, parallel);
}

TEST(BatchSampler, TooFewTokensNamesTheSource) {
  expect_error([] { BatchSampler(counting_span(8), 8, DataOrder::sequential, 0); },
               {"test tokens", "has 8 tokens", "at least 9"});
  EXPECT_NO_THROW(BatchSampler(counting_span(9), 8, DataOrder::sequential, 0));
  expect_error([] { BatchSampler(counting_span(9), 0, DataOrder::sequential, 0); }, {"sequence length 0"});
  EXPECT_EQ(parse_data_order("shuffled"), DataOrder::shuffled);
  expect_error([] { parse_data_order("random"); }, {"unknown data order 'random'"});
}

}  // namespace
}  // namespace cllm::data
