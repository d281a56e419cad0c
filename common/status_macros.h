#ifndef ENGRAM_COMMON_STATUS_MACROS_H_
#define ENGRAM_COMMON_STATUS_MACROS_H_

// Error propagation for absl::Status / absl::StatusOr, with no RPC dependency.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ENGRAM_STATUS_CONCAT_INNER_(a, b) a##b
#define ENGRAM_STATUS_CONCAT_(a, b) ENGRAM_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define ENGRAM_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status engram_status_ = (expr);          \
    if (!engram_status_.ok()) return engram_status_; \
  } while (false)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its status from the current
// function. `lhs` may declare a variable: ENGRAM_ASSIGN_OR_RETURN(auto table, Make());
#define ENGRAM_ASSIGN_OR_RETURN(lhs, rexpr) \
  ENGRAM_ASSIGN_OR_RETURN_IMPL_(ENGRAM_STATUS_CONCAT_(engram_statusor_, __LINE__), lhs, rexpr)

#define ENGRAM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // ENGRAM_COMMON_STATUS_MACROS_H_
