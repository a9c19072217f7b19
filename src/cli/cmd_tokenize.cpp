// `cllm tokenize`: text file or directory of text files -> .tok file.
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli/commands.h"
#include "data/dataset.h"
#include "data/file_io.h"
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
    if (data::is_token_file(opt->input)) throw data::file_error(opt->input, "is already a token file");
    const data::LoadedTokens loaded = data::load_tokens(opt->input, *tokenizer);
    data::write_token_file(opt->out, loaded.tokens, tokenizer->record());
    std::string skipped;  // the first few names
    for (std::size_t i = 0; i < loaded.skipped.size() && i < 5; ++i)
      skipped += (i ? ", " : "") + loaded.skipped[i].filename().string();
    if (loaded.skipped.size() > 5) skipped += ", ...";
    fmt::print("tokenized {} file(s) with the {} tokenizer: {} tokens (vocab {}, {}-byte) -> {}\n", loaded.files.size(),
               tokenizer->name(), loaded.tokens.size(), loaded.tokens.vocab_size(), loaded.tokens.width(), opt->out);
    if (!skipped.empty()) fmt::print("skipped {} file(s) that are not text: {}\n", loaded.skipped.size(), skipped);
  });
}

}  // namespace cllm::cli
