// A table of bad inputs fed to the real cllm binary: each must end with a
// non-zero exit status (no signal, no abort, no sanitizer report) and a
// message that names the problem.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "run_cllm.h"
#include "train/manifest.h"

namespace cllm::reliability {
namespace {
namespace fs = std::filesystem;

// CLI11's exit codes for flags it rejects itself (CLI/Error.hpp).
constexpr int kValidationError = 105;  // a validator (--seq 0, --threads 0, ...)
constexpr int kRequiredError = 106;    // a required option or argument missing
constexpr int kExtrasError = 109;      // an unknown flag

struct BadInput {
  std::string name;
  // Writes the files the case needs into `dir` and returns cllm's arguments.
  std::function<std::vector<std::string>(const ScratchDir& dir)> setup;
  std::vector<std::string> expected;  // substrings of the output
  int exit_code = 1;                  // cllm's own errors exit 1
};

// gtest names a case by this, not by a dump of its bytes.
void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// `args` with each flag of `changes` (flag, value pairs) set: replaced where
// present, appended otherwise.
std::vector<std::string> set_flags(std::vector<std::string> args, const std::vector<std::string>& changes) {
  for (std::size_t i = 0; i < changes.size(); i += 2) {
    const auto at = std::find(args.begin(), args.end(), changes[i]);
    if (at != args.end() && at + 1 != args.end()) {
      *(at + 1) = changes[i + 1];
    } else {
      args.push_back(changes[i]);
      args.push_back(changes[i + 1]);
    }
  }
  return args;
}

// `cllm train` on a good corpus with the tiny model, flags changed as given.
std::function<std::vector<std::string>(const ScratchDir&)> train_with(std::vector<std::string> changes) {
  return [changes](const ScratchDir& d) {
    write_file(d / "corpus.txt", corpus_text());
    return set_flags(concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string()}), changes);
  };
}

// A version 2 .tok file: header (record size at offset 28), `record`, `tokens`.
std::string token_file_v2(std::uint64_t count, std::uint32_t vocab, const std::string& record, std::string_view tokens) {
  std::string out = token_file_bytes("CLLMTOK1", 2, 2, count, vocab, "");
  const auto size = static_cast<std::uint32_t>(record.size());
  std::memcpy(out.data() + 28, &size, 4);  // little-endian host
  return out + record + std::string(tokens);
}

// `cllm train --data FILE` where FILE holds `bytes`.
std::function<std::vector<std::string>(const ScratchDir&)> train_on(std::string file, std::string bytes) {
  return [file, bytes](const ScratchDir& d) {
    write_file(d / file, bytes);
    return concat(tiny_train_flags(), {"--data", (d / file).string(), "--out", (d / "run").string()});
  };
}

// A FIFO at `path` (opening it for reading would wait for a writer).
void make_fifo(const fs::path& path) {
  if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path.string() + " failed");
}

// Makes a FIFO `name` in the case's directory and returns its path.
std::function<fs::path(const ScratchDir&)> fifo_at(std::string name) {
  return [name](const ScratchDir& d) {
    make_fifo(d / name);
    return d / name;
  };
}

// A Unix socket at `path`, left behind by a process that bound it.
void make_socket(const fs::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  const bool bound = fd >= 0 && ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  if (fd >= 0) ::close(fd);
  if (!bound) throw std::runtime_error("cannot bind a socket at " + path.string());
}

// `cllm train` on a good corpus, the tiny model, `--data` replaced by `data`.
std::function<std::vector<std::string>(const ScratchDir&)> train_on_special(
    std::function<fs::path(const ScratchDir&)> data) {
  return [data](const ScratchDir& d) {
    return concat(tiny_train_flags(), {"--data", data(d).string(), "--out", (d / "run").string()});
  };
}

// `cllm train --tokenizer gpt2` on a good corpus with a valid-looking
// vocab.bpe and the encoder.json that `encoder` makes (returning its path).
std::function<std::vector<std::string>(const ScratchDir&)> train_gpt2_with(std::function<fs::path(const ScratchDir&)> encoder) {
  return [encoder](const ScratchDir& d) {
    write_file(d / "corpus.txt", corpus_text());
    write_file(d / "vocab.bpe", "#version: 0.2\n");
    return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--tokenizer", "gpt2", "--encoder-json",
                                       encoder(d).string(), "--vocab-bpe", (d / "vocab.bpe").string()});
  };
}

// `cllm train --resume` on a run whose only checkpoint (step 1, the tiny
// model's, with a manifest) had `damage` done to its directory.
std::function<std::vector<std::string>(const ScratchDir&)> resume_damaged(std::function<void(const fs::path&)> damage) {
  return [damage](const ScratchDir& d) {
    write_file(d / "corpus.txt", corpus_text());
    write_tiny_checkpoint(d / "run", 1);
    damage(d / "run" / "checkpoints" / "step_00000001");
    return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string(), "--resume"});
  };
}

// `cllm verify` on a run whose only checkpoint had `damage` done to it.
std::function<std::vector<std::string>(const ScratchDir&)> verify_damaged(std::function<void(const fs::path&)> damage) {
  return [damage](const ScratchDir& d) {
    write_tiny_checkpoint(d / "run", 1);
    damage(d / "run" / "checkpoints" / "step_00000001");
    return std::vector<std::string>{"verify", (d / "run").string()};
  };
}

void edit_manifest(const fs::path& ckpt, const std::function<void(nlohmann::json&)>& edit) {
  auto manifest = nlohmann::json::parse(read_file(ckpt / "manifest.json"));
  edit(manifest);
  write_file(ckpt / "manifest.json", manifest.dump());
}

// `cllm eval` of the tiny model on a good corpus, flags added.
std::function<std::vector<std::string>(const ScratchDir&)> eval_with(std::vector<std::string> flags) {
  return [flags](const ScratchDir& d) {
    write_tiny_weights(d / "w.safetensors");
    write_file(d / "corpus.txt", corpus_text());
    return concat({"eval", "--ckpt", (d / "w.safetensors").string(), "--data", (d / "corpus.txt").string()}, flags);
  };
}

// `cllm generate` from the tiny model, flags added.
std::function<std::vector<std::string>(const ScratchDir&)> generate_with(std::vector<std::string> flags) {
  return [flags](const ScratchDir& d) {
    write_tiny_weights(d / "w.safetensors");
    return concat({"generate", "--ckpt", (d / "w.safetensors").string()}, flags);
  };
}

// `cllm generate --ckpt FILE` where FILE holds `bytes`.
std::function<std::vector<std::string>(const ScratchDir&)> generate_from(std::string bytes) {
  return [bytes](const ScratchDir& d) {
    write_file(d / "w.safetensors", bytes);
    return std::vector<std::string>{"generate", "--ckpt", (d / "w.safetensors").string(), "--tokens", "4"};
  };
}

// The tiny model's valid weights with `edit` applied to the bytes.
std::function<std::vector<std::string>(const ScratchDir&)> generate_from_edited(std::function<void(std::string&)> edit) {
  return [edit](const ScratchDir& d) {
    write_tiny_weights(d / "w.safetensors");
    std::string bytes = read_file(d / "w.safetensors");
    edit(bytes);
    write_file(d / "w.safetensors", bytes);
    return std::vector<std::string>{"generate", "--ckpt", (d / "w.safetensors").string(), "--tokens", "4"};
  };
}

// Offset of the first data byte of a safetensors file.
std::size_t data_start(const std::string& bytes) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  return 8 + static_cast<std::size_t>(n);
}

const std::string kF32Tensor = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

// Zero and negative sizes and counts: an error naming the flag, before anything runs.
std::vector<BadInput> too_small_sizes() {
  struct SizeFlag {
    std::string command, flag, value;
  };
  const SizeFlag flags[] = {
      {"train", "--seq", "0"},        {"train", "--seq", "-1"},         {"train", "--batch", "0"},
      {"train", "--accum", "0"},      {"train", "--accum", "-1"},       {"train", "--steps", "0"},
      {"train", "--steps", "-1"},     {"train", "--layers", "0"},       {"train", "--dim", "0"},
      {"train", "--dim", "-1"},       {"train", "--heads", "0"},        {"train", "--context", "0"},
      {"train", "--vocab", "0"},      {"train", "--eval-batches", "0"}, {"train", "--log-every", "0"},
      {"generate", "--tokens", "0"},  {"generate", "--tokens", "-1"},   {"generate", "--heads", "0"},
      {"eval", "--seq", "0"},         {"eval", "--batch", "0"},         {"eval", "--heads", "0"},
  };
  std::vector<BadInput> out;
  for (const SizeFlag& f : flags) {
    const std::vector<std::string> change{f.flag, f.value};
    out.push_back({f.command + " " + f.flag + " " + f.value,
                   f.command == "train" ? train_with(change) : f.command == "eval" ? eval_with(change) : generate_with(change),
                   {f.flag + ": must be >= 1, got " + f.value}, kValidationError});
  }
  return out;
}

std::vector<BadInput> bad_inputs() {
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk.push_back(static_cast<char>((i * 7919 + 13) % 251));
  std::string tokens3(6, '\0');  // three 2-byte tokens: 0, 0, 0
  const std::string big_token("\x05\x00\xff\x00", 4);  // tokens 5 and 255 with vocab 100
  std::vector<BadInput> cases = {
      // Data files
      {"empty text file", train_on("empty.txt", ""), {"empty.txt", "is empty"}},
      {"binary junk as text", train_on("junk.txt", junk), {"junk.txt", "NUL"}},
      {"text too short for one sequence", train_on("short.txt", "abc"), {"short.txt", "tokens"}},
      {".tok with wrong magic", train_on("bad.tok", token_file_bytes("NOTATOK1", 1, 2, 3, 256, tokens3)),
       {"bad.tok", "magic"}},
      {".tok with unsupported version", train_on("v9.tok", token_file_bytes("CLLMTOK1", 9, 2, 3, 256, tokens3)),
       {"v9.tok", "version 9"}},
      {".tok with width 3", train_on("w3.tok", token_file_bytes("CLLMTOK1", 1, 3, 2, 256, tokens3)),
       {"w3.tok", "width 3"}},
      {".tok whose count lies (truncated)", train_on("trunc.tok", token_file_bytes("CLLMTOK1", 1, 2, 1000000, 256, tokens3)),
       {"trunc.tok", "1000000 tokens"}},
      {".tok with a huge count (overflow)", train_on("huge.tok", token_file_bytes("CLLMTOK1", 1, 2, ~0ull, 256, tokens3)),
       {"huge.tok", "tokens"}},
      {".tok with a token past its vocabulary", train_on("vocab.tok", token_file_bytes("CLLMTOK1", 1, 2, 2, 100, big_token)),
       {"vocab.tok", "not below the vocabulary size 100"}},
      {".tok shorter than its header", train_on("tiny.tok", "CLLMTOK1"), {"tiny.tok", "too short"}},
      {"empty .tok file", train_on("empty.tok", ""), {"empty.tok': is 0 bytes, too short for a token file's 32-byte header"}},
      {".tok whose tokenizer record is not JSON",
       train_on("rec.tok", token_file_v2(3, 256, "{\"name\": \"byte\", vocab", tokens3)),
       {"rec.tok': tokenizer record is not a JSON object"}},
      {".tok whose record and header disagree on the vocabulary",
       train_on("recvocab.tok", token_file_v2(3, 256, R"({"name":"byte","vocab_size":300,"vocab_hash":""})", tokens3)),
       {"recvocab.tok': tokenizer record says vocabulary 300 but the header says 256"}},
      {".tok recording a tokenizer other than the one given", [tokens3](const ScratchDir& d) {
         // A gpt2 record with its vocabulary, trained with --tokenizer byte given.
         write_file(d / "gpt2.tok", token_file_v2(3, 50257, R"({"name":"gpt2","vocab_size":50257,"vocab_hash":"fnv1a64:0123456789abcdef"})",
                                                  tokens3));
         return concat(tiny_train_flags(), {"--data", (d / "gpt2.tok").string(), "--out", (d / "run").string(), "--tokenizer", "byte"});
       }, {"gpt2.tok': records the tokenizer gpt2 (vocabulary 50257", "but the tokenizer given is byte"}},
      {"missing data file", [](const ScratchDir& d) {
         return concat(tiny_train_flags(), {"--data", (d / "nope.txt").string(), "--out", (d / "run").string()});
       }, {"nope.txt", "no such file"}},
      {"directory without text files", [](const ScratchDir& d) {
         fs::create_directories(d / "bin");
         write_file(d / "bin" / "a.dat", std::string("\0\1\2", 3));
         return concat(tiny_train_flags(), {"--data", (d / "bin").string(), "--out", (d / "run").string()});
       }, {"bin", "no non-empty text files"}},
      // Weights files
      {"empty weights file", generate_from(""), {"w.safetensors"}},
      {"binary junk as weights", generate_from(junk), {"w.safetensors", "header"}},
      {"header length past the end of the file", generate_from(safetensors_bytes(1000, "{}", "")), {"w.safetensors", "header"}},
      {"header length 2^63", generate_from(safetensors_bytes(1ull << 63, "{}", "")), {"w.safetensors", "header"}},
      {"header not JSON", generate_from(safetensors_bytes(8, "{oops!!}", "")), {"w.safetensors", "JSON"}},
      {"data offsets past the data", generate_from(safetensors_bytes(kF32Tensor.size(), kF32Tensor, "1234")),
       {"w.safetensors", "x"}},
      {"offsets that do not match the shape",
       generate_from(safetensors_bytes(kF32Tensor.size(), R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678")),
       {"w.safetensors", "x"}},
      {"unknown dtype",
       generate_from(safetensors_bytes(kF32Tensor.size(), R"({"x":{"dtype":"Q99","shape":[2],"data_offsets":[0,8]}})", "12345678")),
       {"w.safetensors", "Q99"}},
      {"truncated weights", generate_from_edited([](std::string& b) { b.resize(b.size() / 2); }), {"w.safetensors"}},
      {"NaN weights", generate_from_edited([](std::string& b) {
         const std::size_t at = data_start(b) + 4;  // second float of the first tensor
         const char nan[4] = {0, 0, static_cast<char>(0xC0), 0x7F};
         b.replace(at, 4, nan, 4);
       }), {"w.safetensors", "NaN"}},
      {"wrong tensor shape", generate_from_edited([](std::string& b) {
         // ln_f.bias is [16]; claim [4,4] (same byte count, wrong shape).
         auto header = nlohmann::json::parse(b.substr(8, data_start(b) - 8));
         header["ln_f.bias"]["shape"] = {4, 4};
         const std::string text = header.dump();
         b = safetensors_bytes(text.size(), text, b.substr(data_start(b)));
       }), {"w.safetensors", "ln_f.bias", "shape"}},
      {"weights path is a directory", [](const ScratchDir& d) {
         fs::create_directories(d / "dir.safetensors");
         return std::vector<std::string>{"train", "--data", "x", "--steps", "1", "--init-from", (d / "dir.safetensors").string()};
       }, {"dir.safetensors", "directory"}},
      {"generate with a missing --ckpt", [](const ScratchDir& d) {
         return std::vector<std::string>{"generate", "--ckpt", (d / "missing").string()};
       }, {"missing", "no such file"}},
      {"generate from an empty run directory", [](const ScratchDir& d) {
         fs::create_directories(d / "emptyrun");
         return std::vector<std::string>{"generate", "--ckpt", (d / "emptyrun").string()};
       }, {"emptyrun", "no complete checkpoint"}},
      // Tokenizer files
      // (gpt2 with neither file finds them in the data directory where scripts/test.sh fetched them;
      // FirstHour.Gpt2FindsItsVocabularyWithoutPathsAfterTheFetch checks the message where they are missing)
      {"gpt2 with --encoder-json but no --vocab-bpe", train_with({"--tokenizer", "gpt2", "--encoder-json", "e.json"}),
       {"needs both --encoder-json and --vocab-bpe, or neither"}},
      {"gpt2 with a missing encoder.json", train_gpt2_with([](const ScratchDir& d) { return d / "encoder.json"; }),
       {"encoder.json", "no such file"}},
      {"gpt2 encoder.json that is junk", train_gpt2_with([](const ScratchDir& d) {
         write_file(d / "encoder.json", "[1, 2, 3");
         return d / "encoder.json";
       }), {"encoder.json"}},
      {"encoder.json is a directory", train_gpt2_with([](const ScratchDir& d) {
         fs::create_directories(d / "encoder.json");
         return d / "encoder.json";
       }), {"encoder.json", "directory"}},
      // Output
      {"output under a regular file", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         write_file(d / "file", "x");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "file" / "run").string()});
       }, {"file/run"}},
      {"--out on a read-only file system", [](const ScratchDir& d) {
         // /proc takes no new directories, even from root (for whom permission bits are no obstacle).
         write_file(d / "corpus.txt", corpus_text());
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", "/proc/cllm_no_such_run"});
       }, {"cannot create output directory '/proc/cllm_no_such_run'"}},
      {"tokenize to an unwritable path", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         write_file(d / "file", "x");
         return std::vector<std::string>{"tokenize", "--input", (d / "corpus.txt").string(), "--out", (d / "file" / "out.tok").string()};
       }, {"out.tok"}},
      // Flags
      {"--threads 0", train_with({"--threads", "0"}), {"--threads", "0"}, kValidationError},
      {"--threads 100000", train_with({"--threads", "100000"}), {"--threads", "100000"}, kValidationError},
      {"--threads 257", train_with({"--threads", "257"}), {"--threads: Value 257 not in range 1 to 256"}, kValidationError},
      {"--accum 10^12", train_with({"--accum", "1000000000000"}), {"--accum"}},
      {"neither --steps nor --epochs", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         auto args = concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string()});
         args.erase(std::find(args.begin(), args.end(), "--steps"), std::find(args.begin(), args.end(), "--steps") + 2);
         return args;
       }, {"give --steps N or --epochs X"}},
      {"unknown flag", train_with({"--frobnicate", "3"}), {"--frobnicate"}, kExtrasError},
      {"--heads not dividing --dim", train_with({"--heads", "3"}), {"heads", "3"}},
      // Configs that cannot fit: refused by the memory plan before any large
      // allocation (before, the kernel's OOM killer or std::bad_alloc).
      {"--batch 10^7 (memory)", train_with({"--batch", "10000000"}), {"memory: the run needs", "workspaces", "--batch"}},
      {"--layers 8 --dim 4096 (memory)", train_with({"--layers", "8", "--dim", "4096", "--heads", "8"}),
       {"memory: the run needs", "available"}},
      // Memory is linear in T since flash attention and the chunked head: 0.5 GiB planned, and then the corpus is too short.
      {"--context 100000 (fits; short data)", train_with({"--context", "100000"}),
       {"sequences of 100000 tokens need at least 100001"}},
      {"--layers 8 --dim 8192 (memory)", train_with({"--layers", "8", "--dim", "8192", "--heads", "8"}),
       {"memory: the run needs", "params"}},
      // Context, not batch: 2 TiB of workspaces at context 100000.
      {"--context 100000 --batch 512 (memory)", train_with({"--context", "100000", "--batch", "512", "--dim", "256", "--heads", "8"}),
       {"memory: the run needs", "workspaces"}},
      {"--precision nonsense", train_with({"--precision", "fp8"}), {"--precision 'fp8'", "auto, fp32 or bf16"}},
      {"--seq beyond --context", train_with({"--seq", "64"}), {"--seq 64", "context 16"}},
      {"nonsense --data-order", train_with({"--data-order", "sideways"}), {"sideways"}},
      {"--lr NaN", train_with({"--lr", "nan"}), {"learning rate", "nan"}},
      {"--vocab below the tokenizer's", train_with({"--vocab", "10"}), {"--vocab 10"}},
      {"--skip-spikes negative", train_with({"--skip-spikes", "-1"}), {"--skip-spikes"}},
      {"--on-save-error nonsense", train_with({"--on-save-error", "retry"}), {"--on-save-error", "retry"}, kValidationError},
      {"existing run without --resume", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         write_tiny_weights(d / "model.safetensors");
         fs::create_directories(d / "run" / "checkpoints" / "step_00000001");
         fs::copy_file(d / "model.safetensors", d / "run" / "checkpoints" / "step_00000001" / "model.safetensors");
         fs::copy_file(d / "model.safetensors", d / "run" / "checkpoints" / "step_00000001" / "state.safetensors");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string()});
       }, {"already holds checkpoints", "--resume"}},
      {"corrupt checkpoint on --resume", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         const fs::path ckpt = d / "run" / "checkpoints" / "step_00000001";
         fs::create_directories(ckpt);
         write_tiny_weights(ckpt / "model.safetensors");
         write_file(ckpt / "state.safetensors", "garbage that is not a safetensors file");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string(), "--resume"});
       }, {"state.safetensors"}},
      {"checkpoint of another model on --resume", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         const fs::path ckpt = d / "run" / "checkpoints" / "step_00000001";
         fs::create_directories(ckpt);
         write_tiny_weights(ckpt / "model.safetensors");
         write_tiny_weights(ckpt / "state.safetensors");
         return set_flags(concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string(), "--resume"}),
                          {"--dim", "32"});
       }, {"model.safetensors", "config differs"}},
      {"eval with a missing --data", [](const ScratchDir& d) {
         write_tiny_weights(d / "w.safetensors");
         return std::vector<std::string>{"eval", "--ckpt", (d / "w.safetensors").string(), "--data", (d / "none.txt").string()};
       }, {"none.txt", "no such file"}},
      {"tokenize a missing input", [](const ScratchDir& d) {
         return std::vector<std::string>{"tokenize", "--input", (d / "none.txt").string(), "--out", (d / "out.tok").string()};
       }, {"none.txt"}},
      {"--epochs -1", train_with({"--epochs", "-1"}), {"--epochs: must be > 0, got -1"}, kValidationError},
      {"eval --seq beyond the context", eval_with({"--seq", "17"}), {"--seq 17 exceeds the model context 16"}},
      {"eval --max-batches -1", eval_with({"--max-batches", "-1"}), {"--max-batches", "-1"}, kValidationError},
      // Not regular files: named at once, never a blocking open or an endless read
      {"FIFO as --data", train_on_special(fifo_at("fifo.txt")), {"fifo.txt': is a FIFO (named pipe), expected a regular file"}},
      {"/dev/zero as --data", train_on_special([](const ScratchDir&) { return fs::path("/dev/zero"); }),
       {"'/dev/zero': is a character device, expected a regular file"}},
      {"/dev/null as --data", train_on_special([](const ScratchDir&) { return fs::path("/dev/null"); }),
       {"'/dev/null': is a character device, expected a regular file"}},
      {"socket as --data", train_on_special([](const ScratchDir& d) {
         make_socket(d / "sock");
         return d / "sock";
       }), {"sock': is a socket, expected a regular file"}},
      {"FIFO as --init-from", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         make_fifo(d / "w.safetensors");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string(), "--init-from",
                                            (d / "w.safetensors").string()});
       }, {"w.safetensors': is a FIFO"}},
      {"FIFO as generate --ckpt", [](const ScratchDir& d) {
         make_fifo(d / "w.safetensors");
         return std::vector<std::string>{"generate", "--ckpt", (d / "w.safetensors").string()};
       }, {"w.safetensors': is a FIFO"}},
      {"/dev/zero as eval --data", [](const ScratchDir& d) {
         write_tiny_weights(d / "w.safetensors");
         return std::vector<std::string>{"eval", "--ckpt", (d / "w.safetensors").string(), "--data", "/dev/zero"};
       }, {"'/dev/zero': is a character device"}},
      {"FIFO as --encoder-json", train_gpt2_with(fifo_at("encoder.json")), {"encoder.json': is a FIFO"}},
      {"/dev/zero as --encoder-json", train_gpt2_with([](const ScratchDir&) { return fs::path("/dev/zero"); }),
       {"'/dev/zero': is a character device"}},
      {"plot of /dev/zero", [](const ScratchDir&) { return std::vector<std::string>{"plot", "/dev/zero"}; },
       {"/dev/zero: cannot open ('/dev/zero': is a character device"}},
      {"plot of a FIFO", [](const ScratchDir& d) {
         return std::vector<std::string>{"plot", fifo_at("metrics.jsonl")(d).string()};
       }, {"metrics.jsonl: cannot open (", "is a FIFO"}},
      // Damaged checkpoints (the only one of the run): named, then one error
      {"checkpoint with a flipped byte on --resume", resume_damaged([](const fs::path& c) {
         std::string b = read_file(c / "model.safetensors");
         b[b.size() / 2] ^= 1;
         write_file(c / "model.safetensors", b);
       }), {"step_00000001/model.safetensors': contents changed", "no intact checkpoint: all 1 are damaged"}},
      {"checkpoint with a truncated file on --resume", resume_damaged([](const fs::path& c) {
         fs::resize_file(c / "state.safetensors", 100);
       }), {"step_00000001/state.safetensors': 100 bytes, the manifest says", "(truncated)", "no intact checkpoint"}},
      {"checkpoint missing a file on --resume", resume_damaged([](const fs::path& c) { fs::remove(c / "state.safetensors"); }),
       {"step_00000001/state.safetensors': missing (the manifest lists it)", "no intact checkpoint"}},
      {"checkpoint missing its manifest on --resume", resume_damaged([](const fs::path& c) { fs::remove(c / "manifest.json"); }),
       {"step_00000001/manifest.json': missing (state.safetensors says", "no intact checkpoint"}},
      {"manifest naming a missing file on --resume", resume_damaged([](const fs::path& c) {
         edit_manifest(c, [](nlohmann::json& m) { m["files"]["tokenizer.json"] = {{"bytes", 1}, {"xxh64", "0000000000000001"}}; });
       }), {"step_00000001/tokenizer.json': missing (the manifest lists it)", "no intact checkpoint"}},
      {"manifest naming a path outside the checkpoint", resume_damaged([](const fs::path& c) {
         edit_manifest(c, [](nlohmann::json& m) { m["files"]["../../corpus.txt"] = {{"bytes", 1}, {"xxh64", "0000000000000001"}}; });
       }), {"manifest.json': file name '../../corpus.txt' is not a plain name", "no intact checkpoint"}},
      {"manifest with a bad hash", resume_damaged([](const fs::path& c) {
         edit_manifest(c, [](nlohmann::json& m) { m["files"]["model.safetensors"]["xxh64"] = "xyz"; });
       }), {"manifest.json': file 'model.safetensors': \"xxh64\" must be 16 lowercase hex digits"}},
      {"manifest of another version", resume_damaged([](const fs::path& c) {
         edit_manifest(c, [](nlohmann::json& m) { m["version"] = 7; });
       }), {"manifest.json': unsupported manifest version 7 (expected 1)"}},
      {"manifest not listing the weights", resume_damaged([](const fs::path& c) {
         edit_manifest(c, [](nlohmann::json& m) { m["files"].erase("model.safetensors"); });
       }), {"manifest.json': does not list model.safetensors"}},
      {"FIFO in place of a checkpoint file", resume_damaged([](const fs::path& c) {
         fs::remove(c / "model.safetensors");
         make_fifo(c / "model.safetensors");
       }), {"step_00000001/model.safetensors': is a FIFO", "no intact checkpoint"}},
      {"manifest of binary junk", resume_damaged([junk](const fs::path& c) { write_file(c / "manifest.json", junk); }), {"step_00000001/manifest.json': is not valid JSON", "no intact checkpoint"}},
      {"manifest that is a directory", resume_damaged([](const fs::path& c) {
         fs::remove(c / "manifest.json");
         fs::create_directory(c / "manifest.json");
       }), {"step_00000001/manifest.json': is a directory, expected a regular file", "no intact checkpoint"}},
      {"manifest naming a directory", resume_damaged([](const fs::path& c) {
         fs::create_directory(c / "sub");
         edit_manifest(c, [](nlohmann::json& m) { m["files"]["sub"] = {{"bytes", 0}, {"xxh64", "0000000000000001"}}; });
       }), {"step_00000001/sub': is a directory, expected a regular file", "no intact checkpoint"}},
      {"checkpoint file a symlink to /dev/zero", resume_damaged([](const fs::path& c) {
         fs::remove(c / "state.safetensors");
         fs::create_symlink("/dev/zero", c / "state.safetensors");
       }), {"step_00000001/state.safetensors': is a character device, expected a regular file", "no intact checkpoint"}},
      {"NaN weights in a checkpoint its manifest matches", resume_damaged([](const fs::path& c) {
         // Not a disk fault: the manifest was made for these bytes, so the loader's own check must catch them.
         std::string b = read_file(c / "model.safetensors");
         const char nan[4] = {0, 0, static_cast<char>(0xC0), 0x7F};
         b.replace(data_start(b) + 4, 4, nan, 4);
         write_file(c / "model.safetensors", b);
         train::write_manifest(c, {"model.safetensors", "state.safetensors"});
       }), {"step_00000001/model.safetensors': tensor '", "contains NaN or infinite values"}},
      {"generate from a run whose only checkpoint is damaged", [](const ScratchDir& d) {
         write_tiny_checkpoint(d / "run", 1);
         fs::resize_file(d / "run" / "checkpoints" / "step_00000001" / "model.safetensors", 50);
         return std::vector<std::string>{"generate", "--ckpt", (d / "run").string(), "--tokens", "2"};
       }, {"model.safetensors': 50 bytes, the manifest says", "no intact checkpoint: all 1 are damaged"}},
      {"verify of a damaged run", verify_damaged([](const fs::path& c) { fs::remove(c / "model.safetensors"); }),
       {"step_00000001: damaged: ", "model.safetensors': missing", "1 checkpoints checked; none is intact"}},
      {"verify of a file", [](const ScratchDir& d) {
         write_file(d / "file", "x");
         return std::vector<std::string>{"verify", (d / "file").string()};
       }, {"file': is not a directory"}},
      {"verify without a run directory", [](const ScratchDir&) { return std::vector<std::string>{"verify"}; },
       {"RUN_DIR is required"}, kRequiredError},
  };
  for (BadInput& c : too_small_sizes()) cases.push_back(std::move(c));
  return cases;
}

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, FailsCleanlyWithAClearMessage) {
  const BadInput& c = GetParam();
  const ScratchDir dir("bad_" + std::to_string(std::hash<std::string>{}(c.name) % 1000000));
  const auto args = c.setup(dir);
  const RunResult r = run_cllm(args, {}, 120);
  EXPECT_TRUE(clean_failure(r)) << c.name << ": " << describe(r) << "\n" << r.output;
  EXPECT_EQ(r.exit_code, c.exit_code) << c.name << ":\n" << r.output;
  for (const std::string& part : c.expected)
    EXPECT_NE(r.output.find(part), std::string::npos) << c.name << ": '" << part << "' not in:\n" << r.output;
}

std::string case_name(const ::testing::TestParamInfo<BadInput>& info) {
  std::string out;
  for (char ch : info.param.name) out += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return std::to_string(info.index) + "_" + out;
}

INSTANTIATE_TEST_SUITE_P(Table, BadInputTest, ::testing::ValuesIn(bad_inputs()), case_name);

TEST(BadInputTable, HasAtLeast40Cases) { EXPECT_GE(bad_inputs().size(), 40u); }

}  // namespace
}  // namespace cllm::reliability

namespace cllm::reliability {
namespace {

// `cllm info` names what a run would use, and a forced backend the build
// lacks or does not know is one clear error.
TEST(CllmInfo, NamesTheChosenSimdTargetAndSgemmBackend) {
  const RunResult r = run_cllm({"info"}, [] { ::setenv("CLLM_GEMM", "naive", 1); });
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("chosen target    : "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CLLM_GEMM        : naive"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("chosen sgemm     : naive"), std::string::npos) << r.output;
}

TEST(CllmInfo, UnknownSgemmBackendIsAClearError) {
  const RunResult r = run_cllm({"info"}, [] { ::setenv("CLLM_GEMM", "bogus", 1); });
  EXPECT_TRUE(clean_failure(r)) << describe(r) << "\n" << r.output;
  EXPECT_NE(r.output.find("CLLM_GEMM='bogus' is not a sgemm backend"), std::string::npos) << r.output;
}

// How far the onednn backend's brgemm path reaches beyond attention
// (sgemm_onednn.cpp) is set by CLLM_ONEDNN_MATMUL_MAX; `cllm info` shows
// it, nonsense is an error.
TEST(CllmInfo, OnednnMatmulLimitIsShownAndNonsenseIsAClearError) {
  const RunResult plain = run_cllm({"info"}, [] { ::setenv("CLLM_GEMM", "onednn", 1); });
  if (plain.exit_code != 0 && plain.output.find("no such sgemm backend") != std::string::npos)
    GTEST_SKIP() << "this build has no onednn backend";
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find(" (brgemm matmul for attention and A B^T of 16+ rows, dnnl_sgemm for the rest), kernels for "),
            std::string::npos)
      << plain.output;
  const RunResult moved = run_cllm({"info"}, [] {
    ::setenv("CLLM_GEMM", "onednn", 1);
    ::setenv("CLLM_ONEDNN_MATMUL_MAX", "1e30", 1);
  });
  ASSERT_EQ(moved.exit_code, 0) << moved.output;
  EXPECT_NE(moved.output.find("brgemm matmul for attention, A B^T of 16+ rows and up to 1e+30 multiply-adds"), std::string::npos)
      << moved.output;
  const RunResult bad = run_cllm({"info"}, [] {
    ::setenv("CLLM_GEMM", "onednn", 1);
    ::setenv("CLLM_ONEDNN_MATMUL_MAX", "-5", 1);
  });
  EXPECT_TRUE(clean_failure(bad)) << describe(bad) << "\n" << bad.output;
  EXPECT_NE(bad.output.find("CLLM_ONEDNN_MATMUL_MAX='-5' is not a number of multiply-adds >= 0"), std::string::npos)
      << bad.output;
}

}  // namespace
}  // namespace cllm::reliability
