// The one answer to a request that arrives while shmhubd stops: UNAVAILABLE,
// which tells a client to retry elsewhere or later (a restarted daemon).
//
// Thread safety: pure functions.
#ifndef SHMHUB_SERVER_BASE_SHUTTING_DOWN_H_
#define SHMHUB_SERVER_BASE_SHUTTING_DOWN_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace shmhub::server {

inline constexpr absl::string_view kShuttingDown = "shmhubd is shutting down";

// UNAVAILABLE "shmhubd is shutting down", then "; <refused>" when given
// (e.g. "no new watch streams").
inline absl::Status ShuttingDownError(absl::string_view refused = {}) {
  return absl::UnavailableError(refused.empty() ? std::string(kShuttingDown)
                                                : absl::StrCat(kShuttingDown, "; ", refused));
}

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_BASE_SHUTTING_DOWN_H_
