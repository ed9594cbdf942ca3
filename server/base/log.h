// A tiny stderr logger: one line per lifecycle event, written whole so lines
// from different threads never interleave. Abseil 20220623 has no logging.
//
// Line format: "2026-11-29T10:15:02.123456Z I shmhubd: <message>", where the
// letter is the level (I, W, E).
//
// Thread safety: Log() may be called from any thread at any time.
#ifndef SHMHUB_SERVER_BASE_LOG_H_
#define SHMHUB_SERVER_BASE_LOG_H_

#include "absl/strings/string_view.h"

namespace shmhub::server {

enum class LogLevel { kInfo, kWarning, kError };

void Log(LogLevel level, absl::string_view message);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_BASE_LOG_H_
