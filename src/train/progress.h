// Run time and ETA for the trainer's step lines, and the self-updating
// progress line it shows between logged steps when stdout is a terminal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cllm::train {

// Whole seconds, rounded down: "7s", "1m12s", "2h03m04s" (negative or
// non-finite: "0s").
std::string format_duration(double seconds);

// Seconds the remaining steps take at the rate so far: elapsed / done *
// remaining (done >= 1).
double eta_seconds(double elapsed, std::size_t done, std::size_t remaining);

// One line that each show() rewrites in place ("\r", then the text, then an
// erase to the end of the line). clear() erases it before other output, and
// the destructor does too (an error message then starts on a clean line).
// Does nothing unless stdout is a terminal, so logs and pipes get plain lines.
class ProgressLine {
 public:
  ProgressLine();
  ~ProgressLine();
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void show(std::string_view text);
  void clear();

 private:
  bool enabled_;
  bool shown_ = false;
};

}  // namespace cllm::train
