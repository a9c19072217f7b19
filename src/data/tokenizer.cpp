#include "data/tokenizer.h"

#include <algorithm>
#include <cstdlib>
#include <queue>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unicode/uchar.h>

#include "data/file_io.h"

namespace cllm::data {
namespace fs = std::filesystem;

std::vector<std::int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> out(text.size());
  std::transform(text.begin(), text.end(), out.begin(), [](char c) { return static_cast<unsigned char>(c); });
  return out;
}

std::string ByteTokenizer::decode(std::span<const std::int32_t> tokens) const {
  std::string out(tokens.size(), '\0');
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > 255)
      throw std::invalid_argument(fmt::format("byte tokenizer: token {} is outside the vocabulary [0, 256)", tokens[i]));
    out[i] = static_cast<char>(tokens[i]);
  }
  return out;
}

namespace {

// ---- UTF-8 and the character classes of the GPT-2 pattern ----

enum class CharClass { letter, number, space, other };

struct CodePoint {
  char32_t value;    // meaningful only when valid
  std::size_t size;  // bytes; 1 for an invalid byte
  CharClass cls;
};

// JavaScript's \s (WhiteSpace and LineTerminator), as the reference encoder uses.
bool is_js_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

CharClass classify(char32_t c) {
  if (is_js_space(c)) return CharClass::space;
  const auto mask = U_GET_GC_MASK(static_cast<UChar32>(c));
  if (mask & U_GC_L_MASK) return CharClass::letter;
  if (mask & U_GC_N_MASK) return CharClass::number;
  return CharClass::other;
}

// The UTF-8 sequence starting at `pos`, decoded strictly (Unicode's table
// 3-7: no overlongs, surrogates or values past U+10FFFF).
struct Utf8Sequence {
  char32_t value;    // meaningful only when valid
  std::size_t size;  // valid: the sequence's bytes; else the bytes of its
                     // maximal well-formed prefix, at least 1
  bool valid;
  bool truncated;  // invalid only because the text ends inside it
};

Utf8Sequence utf8_sequence(std::string_view s, std::size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return {b0, 1, true, false};
  std::size_t len;
  char32_t c;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the next byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, c = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, c = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, c = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return {0, 1, false, false};  // a continuation byte, C0/C1 (overlong) or F5..FF
  }
  for (std::size_t i = 1; i < len; ++i) {
    if (pos + i == s.size()) return {0, i, false, true};
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if (b < lo || b > hi) return {0, i, false, false};
    lo = 0x80, hi = 0xBF;
    c = (c << 6) | (b & 0x3F);
  }
  return {c, len, true, false};
}

CodePoint code_point_at(std::string_view s, std::size_t pos) {
  const Utf8Sequence seq = utf8_sequence(s, pos);
  if (!seq.valid) return {0, 1, CharClass::other};
  return {seq.value, seq.size, classify(seq.value)};
}

// ---- GPT-2's byte <-> printable code point table (bytes_to_unicode) ----

struct ByteAlphabet {
  char32_t to_code_point[256];
  std::unordered_map<char32_t, unsigned char> to_byte;
  ByteAlphabet() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_code_point[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      to_byte[to_code_point[b]] = static_cast<unsigned char>(b);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// The raw bytes a vocabulary symbol stands for, or nullopt when it contains a
// character outside the byte alphabet (or invalid UTF-8).
std::optional<std::string> symbol_bytes(std::string_view symbol) {
  const ByteAlphabet& alphabet = byte_alphabet();
  std::string bytes;
  for (std::size_t pos = 0; pos < symbol.size();) {
    const Utf8Sequence seq = utf8_sequence(symbol, pos);
    if (!seq.valid) return std::nullopt;
    const auto it = alphabet.to_byte.find(seq.value);
    if (it == alphabet.to_byte.end()) return std::nullopt;
    bytes.push_back(static_cast<char>(it->second));
    pos += seq.size;
  }
  return bytes;
}

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

// FNV-1a (64-bit) over the size of encoder.json, its bytes and vocab.bpe's.
std::string vocabulary_hash(std::string_view encoder, std::string_view merges) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const auto mix = [&h](std::string_view bytes) {
    for (const char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  };
  const std::uint64_t encoder_size = encoder.size();
  mix(std::string_view(reinterpret_cast<const char*>(&encoder_size), sizeof encoder_size));
  mix(encoder);
  mix(merges);
  return fmt::format("fnv1a64:{:016x}", h);
}

// Longer pieces are not cached: they are rare and would bloat the cache.
constexpr std::size_t kMaxCachedPieceBytes = 64;
constexpr std::size_t kMaxCacheEntries = 1 << 16;

}  // namespace

std::vector<std::string_view> Gpt2Tokenizer::split(std::string_view text) {
  std::vector<std::string_view> pieces;
  const std::size_t n = text.size();
  std::size_t pos = 0;
  // End of the run of `cls` code points starting at `from`.
  const auto run_end = [&](std::size_t from, CharClass cls) {
    while (from < n) {
      const CodePoint c = code_point_at(text, from);
      if (c.cls != cls) break;
      from += c.size;
    }
    return from;
  };
  while (pos < n) {
    const CodePoint c = code_point_at(text, pos);
    std::size_t end = pos;
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c.value == '\'' && c.size == 1 && pos + 1 < n) {
      const std::string_view rest = text.substr(pos + 1, 2);
      if (rest.starts_with("re") || rest.starts_with("ve") || rest.starts_with("ll")) end = pos + 3;
      else if (std::string_view("stmd").find(rest[0]) != std::string_view::npos) end = pos + 2;
    }
    if (end == pos && c.cls != CharClass::space) {
      // ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ : the class of the first code point decides.
      end = run_end(pos, c.cls);
    } else if (end == pos && c.value == ' ' && pos + 1 < n) {
      const CodePoint next = code_point_at(text, pos + 1);
      if (next.cls != CharClass::space) end = run_end(pos + 1, next.cls);
    }
    if (end == pos) {
      // \s+(?!\S)|\s+ : a whitespace run, less its last code point when a
      // non-space follows it and it is longer than one.
      end = run_end(pos, CharClass::space);
      if (end < n) {
        std::size_t last = pos;
        for (std::size_t p = pos; p < end; p += code_point_at(text, p).size) last = p;
        if (last > pos) end = last;
      }
    }
    pieces.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

std::unique_ptr<Gpt2Tokenizer> Gpt2Tokenizer::load(const fs::path& encoder_json, const fs::path& vocab_bpe) {
  constexpr std::uint64_t kMaxFileBytes = 256u << 20;
  std::unique_ptr<Gpt2Tokenizer> tok(new Gpt2Tokenizer());

  const std::string encoder_text = InputFile::open(encoder_json).read_all(kMaxFileBytes);
  const nlohmann::json encoder = nlohmann::json::parse(encoder_text, nullptr, false);
  if (encoder.is_discarded()) throw file_error(encoder_json, "is not valid JSON (expected GPT-2's encoder.json)");
  if (!encoder.is_object() || encoder.empty())
    throw file_error(encoder_json, "is not a non-empty JSON object of {symbol: id}");
  const std::size_t vocab = encoder.size();
  if (vocab > static_cast<std::size_t>(INT32_MAX)) throw file_error(encoder_json, "vocabulary too large");
  tok->id_to_bytes_.resize(vocab);
  std::vector<bool> seen(vocab, false);
  std::unordered_map<std::string, std::int32_t> bytes_to_id;
  for (const auto& [symbol, id_json] : encoder.items()) {
    if (!id_json.is_number_integer())
      throw file_error(encoder_json, fmt::format("id of symbol '{}' is not an integer", symbol));
    const std::int64_t id = id_json.get<std::int64_t>();
    if (id < 0 || static_cast<std::uint64_t>(id) >= vocab)
      throw file_error(encoder_json, fmt::format("id {} of symbol '{}' is outside [0, {}) (ids must be 0..N-1)",
                                                 id, symbol, vocab));
    if (seen[static_cast<std::size_t>(id)]) throw file_error(encoder_json, fmt::format("id {} appears twice", id));
    seen[static_cast<std::size_t>(id)] = true;
    std::optional<std::string> bytes = symbol_bytes(symbol);
    if (!bytes || bytes->empty())
      throw file_error(encoder_json, fmt::format("symbol '{}' is not in GPT-2's byte alphabet", symbol));
    if (!bytes_to_id.emplace(*bytes, static_cast<std::int32_t>(id)).second)
      throw file_error(encoder_json, fmt::format("symbol '{}' appears twice", symbol));
    tok->id_to_bytes_[static_cast<std::size_t>(id)] = std::move(*bytes);
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = bytes_to_id.find(std::string(1, static_cast<char>(b)));
    if (it == bytes_to_id.end())
      throw file_error(encoder_json, fmt::format("has no symbol for byte {} (incomplete byte alphabet)", b));
    tok->byte_token_[b] = it->second;
  }
  if (const auto it = bytes_to_id.find("<|endoftext|>"); it != bytes_to_id.end()) tok->end_of_text_ = it->second;

  const std::string merges = InputFile::open(vocab_bpe).read_all(kMaxFileBytes);
  std::size_t line_no = 0;
  std::int32_t rank = 0;
  for (std::size_t pos = 0; pos < merges.size();) {
    std::size_t eol = merges.find('\n', pos);
    if (eol == std::string::npos) eol = merges.size();
    std::string_view line(merges.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#"))) continue;  // "#version: 0.2"
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
      throw file_error(vocab_bpe, fmt::format("line {}: expected two symbols separated by one space, got '{}'",
                                              line_no, line));
    std::int32_t ids[3];
    std::string joined;
    const std::string_view parts[2] = {line.substr(0, space), line.substr(space + 1)};
    for (int i = 0; i < 2; ++i) {
      const std::optional<std::string> bytes = symbol_bytes(parts[i]);
      const auto it = bytes ? bytes_to_id.find(*bytes) : bytes_to_id.end();
      if (it == bytes_to_id.end())
        throw file_error(vocab_bpe, fmt::format("line {}: symbol '{}' is not in the vocabulary", line_no, parts[i]));
      ids[i] = it->second;
      joined += *bytes;
    }
    const auto merged = bytes_to_id.find(joined);
    if (merged == bytes_to_id.end())
      throw file_error(vocab_bpe, fmt::format("line {}: merged symbol of '{}' is not in the vocabulary", line_no, line));
    ids[2] = merged->second;
    if (!tok->merges_.emplace(pair_key(ids[0], ids[1]), std::pair{rank, ids[2]}).second)
      throw file_error(vocab_bpe, fmt::format("line {}: merge '{}' appears twice", line_no, line));
    ++rank;
  }
  if (rank == 0) throw file_error(vocab_bpe, "has no merges (expected GPT-2's vocab.bpe)");
  tok->vocab_hash_ = vocabulary_hash(encoder_text, merges);
  return tok;
}

// Merges the piece's bytes by rank exactly as encoder.py does (repeatedly the
// lowest-ranked adjacent pair, all its occurrences left to right), in
// O(n log n): a heap of candidate pairs, one rank processed at a time.
void Gpt2Tokenizer::bpe(std::string_view piece, std::vector<std::int32_t>& out) const {
  const std::size_t n = piece.size();
  std::vector<std::int32_t> sym(n);
  std::vector<std::size_t> next(n), prev(n);
  for (std::size_t i = 0; i < n; ++i) {
    sym[i] = byte_token_[static_cast<unsigned char>(piece[i])];
    next[i] = i + 1;  // n = none
    prev[i] = i - 1;  // wraps for i = 0: none
  }
  constexpr std::size_t none = static_cast<std::size_t>(-1);
  using Candidate = std::pair<std::int32_t, std::size_t>;  // (rank, left position)
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto rank_at = [&](std::size_t i) -> std::int32_t {
    if (i == none || i >= n || next[i] >= n) return -1;
    const auto it = merges_.find(pair_key(sym[i], sym[next[i]]));
    return it == merges_.end() ? -1 : it->second.first;
  };
  const auto push = [&](std::size_t i) {
    if (const std::int32_t r = rank_at(i); r >= 0) heap.emplace(r, i);
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<bool> alive(n, true);
  std::vector<std::size_t> touched;
  while (!heap.empty()) {
    const std::int32_t rank = heap.top().first;
    touched.clear();
    // All occurrences of this pair, left to right, before any pair they create.
    while (!heap.empty() && heap.top().first == rank) {
      const std::size_t i = heap.top().second;
      heap.pop();
      if (!alive[i] || rank_at(i) != rank) continue;  // stale
      const std::size_t j = next[i];
      sym[i] = merges_.at(pair_key(sym[i], sym[j])).second;
      alive[j] = false;
      next[i] = next[j];
      if (next[j] < n) prev[next[j]] = i;
      touched.push_back(i);
    }
    for (std::size_t i : touched) {
      if (!alive[i]) continue;
      push(i);
      if (prev[i] != none) push(prev[i]);
    }
  }
  for (std::size_t i = 0; i < n; i = next[i]) out.push_back(sym[i]);
}

std::vector<std::int32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3);
  for (std::string_view piece : split(text)) {
    const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
    if (cacheable) {
      std::lock_guard lock(cache_mutex_);
      if (const auto it = cache_.find(std::string(piece)); it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    const std::size_t first = out.size();
    bpe(piece, out);
    if (cacheable) {
      std::lock_guard lock(cache_mutex_);
      if (cache_.size() >= kMaxCacheEntries) cache_.clear();
      cache_.emplace(std::string(piece), std::vector<std::int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
    }
  }
  return out;
}

// A cut at p is safe when text[p] is ASCII white space and the code point
// ending at p - 1 is not white space: whatever follows, split() puts a piece
// boundary at p and splits text[0, p) as it splits the start of the whole.
//  - Decoding agrees before p: an ASCII byte never continues a sequence, and
//    an invalid byte is a one-byte piece of class other either way.
//  - The piece holding text[p - 1] is a contraction or a run of letters,
//    numbers or other (after an optional ' '), never a white space run; each
//    of those stops at white space, so it ends at p in both, and its
//    lookahead (a contraction's next bytes, a run's next code point) meets
//    white space at p or the end of the text and decides alike.
//  - A white space run before it ends before p - 1, followed by a non-space
//    in both, so \s+(?!\S) trims it alike.
// split() never looks behind, so the pieces from p are those of the text from
// p alone; BPE works within pieces.
std::size_t Gpt2Tokenizer::stream_cut(std::string_view text) const {
  for (std::size_t p = text.size(); p-- > 1;) {
    const auto b = static_cast<unsigned char>(text[p]);
    if (b >= 0x80 || !is_js_space(b)) continue;
    // The code point ending at p - 1 starts at the last byte before p that is
    // not a continuation byte, at most 3 back; otherwise text[p - 1] is an
    // invalid byte of its own (class other).
    std::size_t start = p - 1;
    while (start > 0 && p - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    const Utf8Sequence seq = utf8_sequence(text, start);
    if (!(seq.valid && start + seq.size == p && is_js_space(seq.value))) return p;
  }
  return 0;
}

std::string Gpt2Tokenizer::decode(std::span<const std::int32_t> tokens) const {
  std::string out;
  for (std::int32_t t : tokens) {
    if (t < 0 || t >= vocab_size())
      throw std::invalid_argument(fmt::format("gpt2 tokenizer: token {} is outside the vocabulary [0, {})", t, vocab_size()));
    out += id_to_bytes_[static_cast<std::size_t>(t)];
  }
  return out;
}

std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
  for (std::size_t pos = 0; pos < text.size();) {
    const Utf8Sequence seq = utf8_sequence(text, pos);
    if (!seq.valid) return pos;
    pos += seq.size;
  }
  return std::nullopt;
}

std::size_t utf8_cut(std::string_view text) {
  // A sequence has at most 4 bytes: a cut-short one starts among the last 3.
  for (std::size_t back = 1; back <= 3 && back <= text.size(); ++back) {
    const std::size_t pos = text.size() - back;
    if ((static_cast<unsigned char>(text[pos]) & 0xC0) != 0x80)
      return utf8_sequence(text, pos).truncated ? pos : text.size();
  }
  return text.size();
}

std::string Utf8Sanitizer::feed(std::string_view bytes) {
  pending_ += bytes;
  std::string out;
  std::size_t pos = 0;
  while (pos < pending_.size()) {
    const Utf8Sequence seq = utf8_sequence(pending_, pos);
    if (seq.truncated) break;  // the next piece may complete it
    if (seq.valid) out.append(pending_, pos, seq.size);
    else out += kReplacementCharacter;
    pos += seq.size;
  }
  pending_.erase(0, pos);
  return out;
}

std::string Utf8Sanitizer::finish() {
  const bool incomplete = !pending_.empty();
  pending_.clear();
  return incomplete ? std::string(kReplacementCharacter) : std::string();
}

std::string sanitize_utf8(std::string_view bytes) {
  Utf8Sanitizer sanitizer;
  std::string out = sanitizer.feed(bytes);
  return out + sanitizer.finish();
}

std::vector<std::int32_t> Gpt2Tokenizer::document_separator() const {
  if (end_of_text_ < 0) return {};
  return {end_of_text_};
}

TokenizerRecord Gpt2Tokenizer::record() const {
  return {name(), static_cast<std::uint32_t>(vocab_size()), vocab_hash_};
}

std::string TokenizerRecord::describe() const {
  std::string out = name;
  if (vocab_size) out += fmt::format(" (vocabulary {}{})", vocab_size, vocab_hash.empty() ? "" : ", vocabulary files " + vocab_hash);
  return out;
}

void check_tokenizer(const fs::path& file, const TokenizerRecord& recorded, const Tokenizer& given) {
  const TokenizerRecord actual = given.record();
  const bool differs = recorded.name != actual.name || (recorded.vocab_size && recorded.vocab_size != actual.vocab_size) ||
                       (!recorded.vocab_hash.empty() && recorded.vocab_hash != actual.vocab_hash);
  if (differs)
    throw file_error(file, fmt::format("records the tokenizer {}, but the tokenizer given is {}; leave out --tokenizer, "
                                       "--encoder-json and --vocab-bpe to use the recorded one, or give its files",
                                       recorded.describe(), actual.describe()));
}

fs::path default_gpt2_vocab_dir() {
  if (const char* data = std::getenv("CLLM_DATA"); data && *data) return fs::path(data) / "gpt2";
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return exe.parent_path().parent_path() / "data" / "gpt2";
}

std::unique_ptr<Tokenizer> make_tokenizer(std::string_view name, const fs::path& encoder_json,
                                          const fs::path& vocab_bpe) {
  if (name == "byte") return std::make_unique<ByteTokenizer>();
  if (name == "gpt2") {
    if (encoder_json.empty() != vocab_bpe.empty())
      throw std::invalid_argument("the gpt2 tokenizer needs both --encoder-json and --vocab-bpe, or neither (then "
                                  "the files in " + default_gpt2_vocab_dir().string() + ")");
    if (!encoder_json.empty()) return Gpt2Tokenizer::load(encoder_json, vocab_bpe);
    const fs::path dir = default_gpt2_vocab_dir();
    if (!fs::is_regular_file(dir / "encoder.json") || !fs::is_regular_file(dir / "vocab.bpe"))
      throw std::invalid_argument(fmt::format(
          "the gpt2 tokenizer needs GPT-2's encoder.json and vocab.bpe, and '{}' does not hold them: run "
          "scripts/fetch-gpt2-vocab.sh (it puts them there), or pass --encoder-json and --vocab-bpe",
          dir.string()));
    return Gpt2Tokenizer::load(dir / "encoder.json", dir / "vocab.bpe");
  }
  throw std::invalid_argument(fmt::format("unknown tokenizer '{}' (expected byte or gpt2)", name));
}

}  // namespace cllm::data
