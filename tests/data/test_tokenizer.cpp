#include <cstdlib>
#include <thread>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "gpt2_small_vocab.h"
#include "test_util.h"

namespace cllm::data {
namespace {

using fuzz::byte_symbol;
using testing::expect_error;
using testing::write_bytes;

TEST(ByteTokenizer, RoundTripsEveryByte) {
  const ByteTokenizer tok;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<std::int32_t> ids = tok.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[static_cast<std::size_t>(b)], b);
  EXPECT_EQ(tok.decode(ids), all);
  EXPECT_EQ(tok.vocab_size(), 256);
  const std::vector<std::int32_t> bad = {65, 256};
  expect_error([&] { tok.decode(bad); }, {"token 256", "[0, 256)"});
}

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view piece : Gpt2Tokenizer::split(text)) out.emplace_back(piece);
  return out;
}

// Expected pieces follow the GPT-2 pattern's regex semantics.
TEST(Gpt2Split, FollowsThePattern) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("I'm you're they'll 's"), (V{"I", "'m", " you", "'re", " they", "'ll", " '", "s"}));
  EXPECT_EQ(split("a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(split("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split("x   "), (V{"x", "   "}));
  EXPECT_EQ(split("123abc 45"), (V{"123", "abc", " 45"}));
  EXPECT_EQ(split("!!!? ?!"), (V{"!!!?", " ?!"}));
  EXPECT_EQ(split("h\u00e9llo w\u00f6rld"), (V{"h\u00e9llo", " w\u00f6rld"}));
  EXPECT_EQ(split("\u4f60\u597d \u00bd\u2167"), (V{"\u4f60\u597d", " \u00bd\u2167"}));  // CJK letters, numbers No/Nl
  EXPECT_EQ(split("\t\u3000x"), (V{"\t", "\u3000", "x"}));
  EXPECT_EQ(split("a\xff" "b"), (V{"a", "\xff", "b"}));  // invalid UTF-8: a one-byte "other"
  EXPECT_EQ(split(""), V{});
}

// stream_cut's promise, on random texts of the pieces that make the pattern
// hard (every prefix length is tried as the end of a buffer): the pieces of
// the text before the cut and after it are the pieces of the whole.
TEST(Gpt2Split, StreamCutNeverChangesThePieces) {
  const std::vector<std::string> parts = {"a", "b", " ", "  ", "\n", "\t", "'", "s", "re", "1", "!", "\u00e9",
                                          "\u65e5", "\u3000", "\u00a0", "\U0001F600", "\xff", "\xe6\x97"};
  const auto dir = std::filesystem::temp_directory_path() / ("cllm_stream_cut_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  fuzz::write_small_gpt2_vocab(dir);
  const auto tok = Gpt2Tokenizer::load(dir / "encoder.json", dir / "vocab.bpe");
  std::filesystem::remove_all(dir);
  std::uint64_t state = 12345, cuts = 0;
  for (int round = 0; round < 300; ++round) {
    std::string text;
    for (int i = 0; i < 24; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      text += parts[(state >> 33) % parts.size()];
    }
    const std::vector<std::string> whole = split(text);
    for (std::size_t end = 0; end <= text.size(); ++end) {
      const std::size_t cut = tok->stream_cut(std::string_view(text).substr(0, end));
      ASSERT_LE(cut, end);
      if (cut == 0) continue;
      ++cuts;
      std::vector<std::string> pieces = split(text.substr(0, cut));
      const std::vector<std::string> rest = split(text.substr(cut));
      pieces.insert(pieces.end(), rest.begin(), rest.end());
      ASSERT_EQ(pieces, whole) << "cut at " << cut << " of '" << text << "'";
    }
  }
  EXPECT_GT(cuts, 1000u);
}

TEST(Utf8, FindsFirstInvalidByte) {
  EXPECT_EQ(find_invalid_utf8("plain \u00e9\u4f60\U0001F600"), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("ab\xff"), 2u);
  EXPECT_EQ(find_invalid_utf8("a\xc0\xaf"), 1u);          // overlong '/'
  EXPECT_EQ(find_invalid_utf8("a\xed\xa0\x80"), 1u);      // surrogate
  EXPECT_EQ(find_invalid_utf8("\xf4\x90\x80\x80"), 0u);   // past U+10FFFF
  EXPECT_EQ(find_invalid_utf8("\xe4\xbd"), 0u);           // truncated
  EXPECT_EQ(find_invalid_utf8("\x80"), 0u);               // stray continuation
}

TEST(Utf8, CutsBeforeASequenceTheEndCutsShort) {
  EXPECT_EQ(utf8_cut(""), 0u);
  EXPECT_EQ(utf8_cut("ab"), 2u);
  EXPECT_EQ(utf8_cut("a\xe6\x97"), 1u);
  EXPECT_EQ(utf8_cut("a\xe6\x97\xa5"), 4u);
  EXPECT_EQ(utf8_cut("\xf0\x9f\x98"), 0u);
  EXPECT_EQ(utf8_cut("a\xff"), 2u);          // invalid, not cut short: more bytes cannot mend it
  EXPECT_EQ(utf8_cut("a\xe6" "b"), 3u);
  EXPECT_EQ(utf8_cut("\x80\x80\x80"), 3u);
}

// U+FFFD, as the sanitizer writes it.
const std::string R = "\xEF\xBF\xBD";

TEST(Utf8Sanitizer, KeepsValidSequencesAndReplacesEachIllFormedSubpart) {
  EXPECT_EQ(sanitize_utf8("plain"), "plain");
  EXPECT_EQ(sanitize_utf8("\xc3\xa9"), "\xc3\xa9");                  // 2 bytes: e acute
  EXPECT_EQ(sanitize_utf8("\xe4\xbd\xa0"), "\xe4\xbd\xa0");          // 3 bytes
  EXPECT_EQ(sanitize_utf8("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");  // 4 bytes
  EXPECT_EQ(sanitize_utf8("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), "\xef\xbf\xbf\xf4\x8f\xbf\xbf");  // U+FFFF, U+10FFFF
  EXPECT_EQ(sanitize_utf8("a\xc0\xafz"), "a" + R + R + "z");          // overlong '/': C0 never starts a sequence
  EXPECT_EQ(sanitize_utf8("\xe0\x80\xaf"), R + R + R);                // overlong 3-byte form
  EXPECT_EQ(sanitize_utf8("\xf0\x8f\xbf\xbf"), R + R + R + R);        // overlong 4-byte form
  EXPECT_EQ(sanitize_utf8("a\xed\xa0\x80z"), "a" + R + R + R + "z");  // surrogate D800
  EXPECT_EQ(sanitize_utf8("\xf4\x90\x80\x80"), R + R + R + R);        // past U+10FFFF
  EXPECT_EQ(sanitize_utf8("\x80x\xbf"), R + "x" + R);                 // lone continuation bytes
  EXPECT_EQ(sanitize_utf8("\xff\xfe"), R + R);
  EXPECT_EQ(sanitize_utf8("\xe4\xbdx"), R + "x");                     // truncated: one U+FFFD for the cut sequence
  EXPECT_EQ(sanitize_utf8("\xf0\x9f\x98"), R);                        // truncated at the end
  EXPECT_EQ(sanitize_utf8("\xe4\xbd\xe4\xbd\xa0"), R + "\xe4\xbd\xa0");
  for (const std::string& text : {std::string("\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\x80"), std::string("\xe4\xbd")})
    EXPECT_EQ(find_invalid_utf8(sanitize_utf8(text)), std::nullopt) << text;
}

TEST(Utf8Sanitizer, HoldsBackASequenceUntilTheNextPieceCompletesOrBreaksIt) {
  Utf8Sanitizer s;
  EXPECT_EQ(s.feed("a\xf0"), "a");
  EXPECT_EQ(s.feed("\x9f"), "");
  EXPECT_EQ(s.feed("\x98"), "");
  EXPECT_EQ(s.feed("\x80!"), "\xf0\x9f\x98\x80!");  // completed across four pieces
  EXPECT_EQ(s.feed("\xe4\xbd"), "");
  EXPECT_EQ(s.feed("b"), R + "b");                   // broken by the next piece
  EXPECT_EQ(s.feed("\xc3"), "");
  EXPECT_EQ(s.finish(), R);                          // cut short by the end
  EXPECT_EQ(s.finish(), "");
  EXPECT_EQ(s.feed("\xc3\xa9"), "\xc3\xa9");         // usable again after finish
}

class Gpt2Files : public testing::TempDirTest {
 protected:
  // A vocabulary of the 256 bytes plus `extra` symbols; merges as given.
  void write_files(const std::vector<std::string>& extra, const std::string& merges) {
    nlohmann::json enc = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) enc[byte_symbol(b)] = b;
    int id = 256;
    for (const std::string& s : extra) enc[s] = id++;
    enc["<|endoftext|>"] = id;
    write_bytes(path("encoder.json"), enc.dump());
    write_bytes(path("vocab.bpe"), "#version: 0.2\n" + merges);
  }
  std::unique_ptr<Gpt2Tokenizer> load() { return Gpt2Tokenizer::load(path("encoder.json"), path("vocab.bpe")); }
};

// encoder.py merges the lowest-ranked pair everywhere (left to right,
// non-overlapping) before considering the pairs that creates.
TEST_F(Gpt2Files, MergesByRankLikeEncoderPy) {
  write_files({"aa", "aaa", "Ġa", "Ġaa"}, "a a\naa a\nĠ a\nĠa a\n");
  const auto tok = load();
  EXPECT_EQ(tok->vocab_size(), 261);
  EXPECT_EQ(tok->encode("aaaa"), (std::vector<std::int32_t>{256, 256}));
  EXPECT_EQ(tok->encode("aaa"), (std::vector<std::int32_t>{257}));
  EXPECT_EQ(tok->encode("aaaaa"), (std::vector<std::int32_t>{256, 257}));
  // " aa": (a a) rank 0 before (Ġ a) rank 2 -> [Ġ, aa]
  EXPECT_EQ(tok->encode(" aa"), (std::vector<std::int32_t>{' ', 256}));
  EXPECT_EQ(tok->encode(" a"), (std::vector<std::int32_t>{258}));
  EXPECT_EQ(tok->encode("b"), (std::vector<std::int32_t>{'b'}));
  EXPECT_EQ(tok->decode(tok->encode("aaaaa a b")), "aaaaa a b");
  EXPECT_EQ(tok->document_separator(), (std::vector<std::int32_t>{260}));
  const std::vector<std::int32_t> bad = {5, 261};
  expect_error([&] { tok->decode(bad); }, {"token 261", "[0, 261)"});
  // Same results from the cache, and from a second thread.
  EXPECT_EQ(tok->encode("aaaa"), (std::vector<std::int32_t>{256, 256}));
  std::vector<std::int32_t> from_thread;
  std::thread([&] { from_thread = tok->encode("aaaaa"); }).join();
  EXPECT_EQ(from_thread, (std::vector<std::int32_t>{256, 257}));
}

TEST_F(Gpt2Files, RejectsBadFiles) {
  write_files({"ab"}, "a b\n");
  const auto enc = path("encoder.json"), bpe = path("vocab.bpe");
  expect_error([&] { Gpt2Tokenizer::load(path("missing.json"), bpe); }, {"missing.json", "no such file"});
  expect_error([&] { Gpt2Tokenizer::load(enc, path("missing.bpe")); }, {"missing.bpe", "no such file"});
  expect_error([&] { Gpt2Tokenizer::load(dir_, bpe); }, {dir_.string(), "is a directory"});

  write_bytes(path("bad.json"), "{\"a\": 0,");
  expect_error([&] { Gpt2Tokenizer::load(path("bad.json"), bpe); }, {"bad.json", "not valid JSON"});
  write_bytes(path("bad.json"), "[1]");
  expect_error([&] { Gpt2Tokenizer::load(path("bad.json"), bpe); }, {"bad.json", "{symbol: id}"});
  write_bytes(path("bad.json"), R"({"a": -1})");
  expect_error([&] { Gpt2Tokenizer::load(path("bad.json"), bpe); }, {"bad.json", "id -1", "outside"});
  write_bytes(path("bad.json"), R"({"a": 0, "b": 0})");
  expect_error([&] { Gpt2Tokenizer::load(path("bad.json"), bpe); }, {"bad.json", "id 0 appears twice"});
  write_bytes(path("bad.json"), R"({"a": "x"})");
  expect_error([&] { Gpt2Tokenizer::load(path("bad.json"), bpe); }, {"bad.json", "not an integer"});
  write_bytes(path("bad.json"), R"({"a": 0, "b": 1})");
  expect_error([&] { Gpt2Tokenizer::load(path("bad.json"), bpe); }, {"bad.json", "incomplete byte alphabet"});
  write_bytes(path("bad.json"), "{\"a b\": 0}");
  expect_error([&] { Gpt2Tokenizer::load(path("bad.json"), bpe); }, {"bad.json", "not in GPT-2's byte alphabet"});

  const auto bad_merges = [&](const std::string& text, std::initializer_list<std::string> parts) {
    write_bytes(path("bad.bpe"), text);
    std::vector<std::string> all = {path("bad.bpe").string()};
    all.insert(all.end(), parts);
    try {
      Gpt2Tokenizer::load(enc, path("bad.bpe"));
      ADD_FAILURE() << "loaded: " << text;
    } catch (const std::runtime_error& e) {
      for (const auto& p : all) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  bad_merges("#version: 0.2\nab\n", {"line 2", "two symbols"});
  bad_merges("#version: 0.2\na  b\n", {"line 2", "two symbols"});
  bad_merges("#version: 0.2\na b\nx y\n", {"line 3", "merged symbol of 'x y'"});
  bad_merges("#version: 0.2\na b\nab \xe2\x82\xac\n", {"line 3", "not in the vocabulary"});
  bad_merges("#version: 0.2\na b\na b\n", {"line 3", "appears twice"});
  bad_merges("#version: 0.2\n", {"no merges"});
  bad_merges("", {"no merges"});
}

TEST(MakeTokenizer, NamesAndErrors) {
  EXPECT_EQ(make_tokenizer("byte")->vocab_size(), 256);
  expect_error([] { make_tokenizer("bpe"); }, {"unknown tokenizer 'bpe'", "byte or gpt2"});
  expect_error([] { make_tokenizer("gpt2", "encoder.json"); }, {"both --encoder-json and --vocab-bpe, or neither"});
}

// The record names the tokenizer, its vocabulary size and a hash of both
// vocabulary files, which changes when either file does.
TEST_F(Gpt2Files, RecordHashesBothVocabularyFiles) {
  const TokenizerRecord byte = ByteTokenizer().record();
  EXPECT_EQ(byte.name, "byte");
  EXPECT_EQ(byte.vocab_size, 256u);
  EXPECT_EQ(byte.vocab_hash, "");
  write_files({"aa"}, "a a\n");
  const TokenizerRecord first = load()->record();
  EXPECT_EQ(first.name, "gpt2");
  EXPECT_EQ(first.vocab_size, 258u);
  EXPECT_TRUE(first.vocab_hash.starts_with("fnv1a64:") && first.vocab_hash.size() == 24 &&
              first.vocab_hash.find_first_not_of("0123456789abcdef", 8) == std::string::npos)
      << first.vocab_hash;
  EXPECT_EQ(load()->record().vocab_hash, first.vocab_hash);
  write_files({"aa"}, "a a\n\n");  // vocab.bpe differs by a blank line
  EXPECT_NE(load()->record().vocab_hash, first.vocab_hash);
  write_files({"bb"}, "b b\n");  // encoder.json differs
  EXPECT_NE(load()->record().vocab_hash, first.vocab_hash);
}

TEST_F(Gpt2Files, CheckTokenizerNamesTheFileTheRecordAndTheGivenOne) {
  write_files({"aa"}, "a a\n");
  const auto gpt2 = load();
  const TokenizerRecord recorded = gpt2->record();
  check_tokenizer("x.tok", recorded, *gpt2);
  check_tokenizer("old.safetensors", {"gpt2", 0, ""}, *gpt2);  // name only: checkpoints made before the record
  expect_error([&] { check_tokenizer("x.tok", recorded, ByteTokenizer()); },
               {"'x.tok'", "records the tokenizer gpt2 (vocabulary 258, vocabulary files " + recorded.vocab_hash + ")",
                "the tokenizer given is byte (vocabulary 256)", "leave out --tokenizer"});
  TokenizerRecord other = recorded;
  other.vocab_hash = "fnv1a64:0000000000000000";
  expect_error([&] { check_tokenizer("x.tok", other, *gpt2); },
               {"fnv1a64:0000000000000000", "given is gpt2 (vocabulary 258, vocabulary files " + recorded.vocab_hash});
  expect_error([&] { check_tokenizer("x.tok", {"gpt2", 50257, ""}, *gpt2); }, {"vocabulary 50257", "vocabulary 258"});
}

// Without paths, gpt2 reads the files in $CLLM_DATA/gpt2, and says how to
// get them when they are missing.
TEST_F(Gpt2Files, FindsTheVocabularyInTheDataDirectory) {
  ASSERT_EQ(::setenv("CLLM_DATA", dir_.c_str(), 1), 0);
  EXPECT_EQ(default_gpt2_vocab_dir(), dir_ / "gpt2");
  expect_error([] { make_tokenizer("gpt2"); },
               {(dir_ / "gpt2").string(), "does not hold them", "scripts/fetch-gpt2-vocab.sh", "--encoder-json"});
  write_files({"aa"}, "a a\n");
  std::filesystem::create_directory(path("gpt2"));
  std::filesystem::rename(path("encoder.json"), path("gpt2/encoder.json"));
  std::filesystem::rename(path("vocab.bpe"), path("gpt2/vocab.bpe"));
  const auto tok = make_tokenizer("gpt2");
  ::unsetenv("CLLM_DATA");
  EXPECT_EQ(tok->name(), "gpt2");
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(default_gpt2_vocab_dir().filename(), "gpt2");
  EXPECT_EQ(default_gpt2_vocab_dir().parent_path().filename(), "data");
}

}  // namespace
}  // namespace cllm::data
