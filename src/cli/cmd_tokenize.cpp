// `cllm tokenize`: text file or directory of text files -> .tok file, streamed
// (data::tokenize_to_file).
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli/commands.h"
#include "data/dataset.h"
#include "data/token_file.h"
#include "data/tokenizer.h"

namespace cllm::cli {

void add_tokenize_command(CLI::App& app) {
  struct Options {
    std::string input, tokenizer = "byte", encoder_json, vocab_bpe, out;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Tokenize a text file, or every text file directly in a directory (sorted by name, a document separator "
      "between files: '\\n' for byte, <|endoftext|> for gpt2; binary files skipped), into a .tok file");
  cmd->add_option("--input", opt->input, "Text file or directory of text files")->required();
  cmd->add_option("--tokenizer", opt->tokenizer, "byte or gpt2 (recorded in the .tok file)")->capture_default_str();
  cmd->add_option("--encoder-json", opt->encoder_json, "GPT-2 encoder.json (gpt2; default: the data directory's)");
  cmd->add_option("--vocab-bpe", opt->vocab_bpe, "GPT-2 vocab.bpe (gpt2; default: the data directory's)");
  cmd->add_option("--out", opt->out, "Output .tok file (written crash-safely)")->required();
  cmd->callback([opt] {
    const auto tokenizer = data::make_tokenizer(opt->tokenizer, opt->encoder_json, opt->vocab_bpe);
    const data::TokenizedText done = data::tokenize_to_file(opt->input, *tokenizer, opt->out);
    std::string skipped;  // the first few names
    for (std::size_t i = 0; i < done.skipped.size() && i < 5; ++i)
      skipped += (i ? ", " : "") + done.skipped[i].filename().string();
    if (done.skipped.size() > 5) skipped += ", ...";
    const auto vocab = static_cast<std::uint32_t>(tokenizer->vocab_size());
    fmt::print("tokenized {} file(s) with the {} tokenizer: {} tokens (vocab {}, {}-byte) -> {}\n", done.files.size(),
               tokenizer->name(), done.tokens, vocab, data::token_width(vocab), opt->out);
    if (!skipped.empty()) fmt::print("skipped {} file(s) that are not text: {}\n", done.skipped.size(), skipped);
  });
}

}  // namespace cllm::cli
