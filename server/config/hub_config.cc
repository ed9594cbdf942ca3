#include "server/config/hub_config.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "shm/format.h"

namespace shmhub::server {
namespace {

absl::Status FlagError(absl::string_view flag, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

absl::Status RequireRange(absl::string_view flag, absl::Duration value, absl::Duration lo,
                          absl::Duration hi) {
  if (value < lo || value > hi) {
    return FlagError(flag, absl::StrCat(absl::FormatDuration(value), " is outside ",
                                        absl::FormatDuration(lo), "..", absl::FormatDuration(hi)));
  }
  return absl::OkStatus();
}

absl::Status RequireRange(absl::string_view flag, uint64_t value, uint64_t lo, uint64_t hi) {
  if (value < lo || value > hi) {
    return FlagError(flag, absl::StrCat(value, " is outside ", lo, "..", hi));
  }
  return absl::OkStatus();
}

// The rules our segment creator enforces on one class (§8.2, D-9), checked
// here so the message names the flag instead of surfacing from the segment.
absl::Status CheckSlotClass(const shm::SlotClassConfig& c, const shm::SlotClassConfig* previous) {
  const std::string item = absl::StrCat(c.slot_size, ":", c.slot_count);
  if (c.slot_size < 8) {
    return FlagError("slot_classes", absl::StrCat("slot size ", c.slot_size, " in '", item,
                                                  "' is below the minimum of 8 bytes"));
  }
  if (c.slot_count < 1 || c.slot_count > shm::kMaxSlotCount) {
    return FlagError("slot_classes", absl::StrCat("slot count ", c.slot_count, " in '", item,
                                                  "' is outside 1..", shm::kMaxSlotCount));
  }
  if (previous != nullptr && c.slot_size <= previous->slot_size) {
    return FlagError("slot_classes", absl::StrCat("slot sizes must be strictly ascending; ",
                                                  c.slot_size, " follows ", previous->slot_size));
  }
  return absl::OkStatus();
}

// HOST:PORT with a port in 0..65535; an IPv6 host in brackets ("[::1]:9464").
// Whether the host is an address of this machine is found out by binding.
absl::Status CheckHostPort(absl::string_view flag, absl::string_view address) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port > 65535 ||
      !std::all_of(address.begin() + colon + 1, address.end(), absl::ascii_isdigit)) {
    return FlagError(flag, absl::StrCat("'", address,
                                        "' is not HOST:PORT with a port 0..65535 "
                                        "(for example 127.0.0.1:9464, or empty for none)"));
  }
  const absl::string_view host = address.substr(0, colon);
  const bool bracketed = host.front() == '[' && host.back() == ']' && host.size() > 2;
  if (!bracketed && absl::StrContains(host, ':')) {
    return FlagError(flag, absl::StrCat("'", address,
                                        "': an IPv6 host goes in brackets, e.g. [::1]:9464"));
  }
  return absl::OkStatus();
}

absl::Status CheckClassCount(size_t count) {
  if (count < 1) return FlagError("slot_classes", "at least one class is required");
  if (count > shm::kMaxSlotClasses) {
    return FlagError("slot_classes",
                     absl::StrCat(count, " classes exceed the maximum of ", shm::kMaxSlotClasses));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Duration HubConfig::ScanInterval() const {
  // A quarter interval, but never busier than 1ms nor lazier than 250ms, so
  // that lease expiry and crash timeouts stay prompt with long intervals.
  return std::clamp(heartbeat_interval / 4, absl::Milliseconds(1), absl::Milliseconds(250));
}

absl::Duration HubConfig::EffectiveHeartbeatGrace() const {
  return heartbeat_grace == absl::ZeroDuration() ? crash_timeout : heartbeat_grace;
}

std::string DefaultSocketPath() {
  constexpr char kRunDir[] = "/run/shmhub";
  if (::access(kRunDir, W_OK | X_OK) == 0 || ::access("/run", W_OK | X_OK) == 0) {
    return absl::StrCat(kRunDir, "/hub.sock");
  }
  return absl::StrCat("/tmp/shmhub-", ::getuid(), "/hub.sock");
}

absl::StatusOr<HubConfig::StopMode> ParseStopMode(absl::string_view text) {
  if (text == "goodbye") return HubConfig::StopMode::kGoodbye;
  if (text == "handover") return HubConfig::StopMode::kHandover;
  return FlagError("stop_mode", absl::StrCat("'", text, "' is neither goodbye nor handover"));
}

absl::string_view StopModeName(HubConfig::StopMode mode) {
  return mode == HubConfig::StopMode::kHandover ? "handover" : "goodbye";
}

absl::Status ValidateHubConfig(const HubConfig& c) {
  if (c.segment_path.empty() || c.segment_path.front() != '/') {
    return FlagError("segment", absl::StrCat("'", c.segment_path, "' must be an absolute path"));
  }
  if (!c.socket_path.empty() && c.socket_path.front() != '/') {
    return FlagError("socket", absl::StrCat("'", c.socket_path,
                                            "' must be an absolute path (or empty: no local socket)"));
  }
  if (absl::Status s = RequireRange("max_guests", c.max_guests, 1, shm::kMaxGuests); !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("ring_bytes", c.ring_bytes, 64, uint64_t{1} << 30); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckClassCount(c.slot_classes.size()); !s.ok()) return s;
  for (size_t k = 0; k < c.slot_classes.size(); ++k) {
    const shm::SlotClassConfig* previous = k == 0 ? nullptr : &c.slot_classes[k - 1];
    if (absl::Status s = CheckSlotClass(c.slot_classes[k], previous); !s.ok()) {
      return s;
    }
  }
  if (c.max_payload_size == 0) return FlagError("max_payload_size", "must be at least 1");
  if (absl::Status s = RequireRange("heartbeat_interval", c.heartbeat_interval,
                                    absl::Milliseconds(1), absl::Hours(1));
      !s.ok()) {
    return s;
  }
  // The crash timeout must exceed the format's staleness threshold, or a
  // guest would be declared crashed before it is ever reported STALE.
  if (c.crash_timeout <= 2 * c.heartbeat_interval) {
    return FlagError("crash_timeout",
                     absl::StrCat(absl::FormatDuration(c.crash_timeout),
                                  " must exceed 2 x --heartbeat_interval (",
                                  absl::FormatDuration(2 * c.heartbeat_interval), ")"));
  }
  if (c.heartbeat_grace < absl::ZeroDuration()) {
    return FlagError("heartbeat_grace", "must not be negative");
  }
  if (absl::Status s = RequireRange("max_lease_ttl", c.max_lease_ttl, absl::Milliseconds(1),
                                    absl::Hours(24 * 7));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("default_lease_ttl", c.default_lease_ttl,
                                    absl::Milliseconds(1), c.max_lease_ttl);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("journal_capacity", c.journal_capacity, 16, 1 << 20);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("watcher_queue", c.watcher_queue, 1, 1 << 20); !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("max_watchers", c.max_watchers, 1, 100000); !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("watch_progress_interval", c.watch_progress_interval,
                                    absl::Milliseconds(10), absl::Hours(1));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("shutdown_grace", c.shutdown_grace, absl::ZeroDuration(),
                                    absl::Minutes(5));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireRange("host_ack_timeout", c.host_ack_timeout, absl::Milliseconds(1),
                                    absl::Minutes(10));
      !s.ok()) {
    return s;
  }
  if (c.listen.empty()) return FlagError("listen", "an address such as 127.0.0.1:50051 is required");
  if (!c.metrics_listen.empty()) {
    if (absl::Status s = CheckHostPort("metrics_listen", c.metrics_listen); !s.ok()) return s;
    if (c.metrics_listen == c.listen && !absl::EndsWith(c.listen, ":0")) {
      return FlagError("metrics_listen",
                       absl::StrCat("'", c.metrics_listen, "' is also --listen; use another port"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<shm::SlotClassConfig>> ParseSlotClasses(absl::string_view text) {
  std::vector<shm::SlotClassConfig> classes;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    uint32_t size = 0;
    uint32_t count = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &size) ||
        !absl::SimpleAtoi(parts[1], &count)) {
      return FlagError("slot_classes", absl::StrCat("'", item,
                                                    "' is not SIZE:COUNT (for example 1024:256)"));
    }
    const shm::SlotClassConfig parsed{size, count};
    if (absl::Status s = CheckSlotClass(parsed, classes.empty() ? nullptr : &classes.back());
        !s.ok()) {
      return s;
    }
    classes.push_back(parsed);
  }
  if (absl::Status s = CheckClassCount(classes.size()); !s.ok()) return s;
  return classes;
}

std::string FormatSlotClasses(const std::vector<shm::SlotClassConfig>& classes) {
  return absl::StrJoin(classes, ",", [](std::string* out, const shm::SlotClassConfig& c) {
    absl::StrAppend(out, c.slot_size, ":", c.slot_count);
  });
}

}  // namespace shmhub::server
