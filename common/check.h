#ifndef ENGRAM_COMMON_CHECK_H_
#define ENGRAM_COMMON_CHECK_H_

// CHECK for programmer errors only (DESIGN.md: bad input gets a Status, never a CHECK).
// Debian's Abseil (20220623) predates absl/log, so Engram carries this small one:
//
//   ENGRAM_CHECK(index < size) << "index " << index;
//
// On failure it prints "file:line: Check failed: <condition> <message>" to stderr and
// aborts. The message expression is evaluated only on failure.

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace engram::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": Check failed: " << condition << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `cond ? (void)0 : Voidify() & stream << ...` type-check as void.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace engram::internal

#define ENGRAM_CHECK(condition)                 \
  (condition) ? (void)0                         \
              : ::engram::internal::Voidify() & \
                    ::engram::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#endif  // ENGRAM_COMMON_CHECK_H_
