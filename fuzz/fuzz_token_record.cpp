// Fuzzes the .tok file's tokenizer record: the input is the record's JSON,
// placed in a valid version 2 header (vocabulary 256, two tokens), so every
// input reaches the record parser. Any input must load or throw
// std::exception; a record that parses is described and checked against the
// byte tokenizer, as `cllm train --data FILE.tok` does.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

#include "data/token_file.h"
#include "data/tokenizer.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The header of token_file.h: magic, version 2, width 2, count 2, vocabulary 256, record size.
  const std::uint32_t record_bytes = static_cast<std::uint32_t>(std::min<std::size_t>(size, 8192));
  std::string file("CLLMTOK1", 8);
  const auto put = [&file](auto value) { file.append(reinterpret_cast<const char*>(&value), sizeof value); };
  put(std::uint32_t{2});
  put(std::uint32_t{2});
  put(std::uint64_t{2});
  put(std::uint32_t{256});
  put(record_bytes);
  file.append(reinterpret_cast<const char*>(data), record_bytes);
  file.append("h\0i\0", 4);
  const auto path = cllm::fuzz::input_file("record.tok", reinterpret_cast<const std::uint8_t*>(file.data()), file.size());
  try {
    const auto record = cllm::data::read_token_file_tokenizer(path);
    if (record) {
      (void)record->describe();
      cllm::data::check_tokenizer(path, *record, cllm::data::ByteTokenizer());
    }
    const auto tokens = cllm::data::read_token_file(path);
    (void)tokens[tokens.size() - 1];
  } catch (const std::exception&) {
  }
  return 0;
}
