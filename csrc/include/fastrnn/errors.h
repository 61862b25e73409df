// Error reporting: exceptions with file:line, never exit/abort on user input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace fastrnn::detail {
[[noreturn]] inline void throw_invalid(const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << msg << " (" << file << ":" << line << ")";
  throw std::invalid_argument(os.str());
}
}  // namespace fastrnn::detail

// FASTRNN_CHECK(cond, msg-stream): throws std::invalid_argument (ValueError in Python).
#define FASTRNN_CHECK(cond, msg)                                               \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::ostringstream fastrnn_os_;                                          \
      fastrnn_os_ << msg;                                                      \
      ::fastrnn::detail::throw_invalid(__FILE__, __LINE__, fastrnn_os_.str()); \
    }                                                                          \
  } while (0)
