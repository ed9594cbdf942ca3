// Everything shmhubd can be configured with, validated in one place. The
// flags of shmhubd_main.cc fill a HubConfig; tests build one directly.
// The defaults here are shmhubd's documented defaults (`shmhubd --help`).
#ifndef SHMHUB_SERVER_CONFIG_HUB_CONFIG_H_
#define SHMHUB_SERVER_CONFIG_HUB_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "shm/layout.h"

namespace shmhub::server {

// --socket's default: /run/shmhub/hub.sock when /run/shmhub exists or can be
// created there, otherwise /tmp/shmhub-<uid>/hub.sock.
std::string DefaultSocketPath();

struct HubConfig {
  // Segment geometry (written into the segment header).
  std::string segment_path = "/dev/shm/shmhub";
  uint32_t max_guests = 64;
  uint32_t ring_bytes = 65536;
  std::vector<shm::SlotClassConfig> slot_classes = {{1024, 256}, {16384, 64}, {262144, 8}};
  uint32_t max_payload_size = 1 << 20;
  absl::Duration heartbeat_interval = absl::Milliseconds(100);

  // Liveness.
  absl::Duration crash_timeout = absl::Seconds(1);
  bool require_heartbeat = false;
  // With require_heartbeat: how long after attaching a guest may go without
  // its first heartbeat. Zero means crash_timeout.
  absl::Duration heartbeat_grace = absl::ZeroDuration();

  // Reservations.
  absl::Duration default_lease_ttl = absl::Seconds(30);
  absl::Duration max_lease_ttl = absl::Minutes(10);

  // Event journal and watchers.
  uint32_t journal_capacity = 4096;   // events kept for resume
  uint32_t watcher_queue = 1024;      // undelivered events per watcher before RESYNC
  uint32_t max_watchers = 1024;
  absl::Duration watch_progress_interval = absl::Seconds(10);

  // Endpoints. An empty metrics_listen disables the /metrics exposer.
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  // The local Unix socket guests bootstrap over (LocalSocketServer). Empty
  // disables it.
  std::string socket_path = DefaultSocketPath();

  // Bounded shutdown: how long in-flight RPCs get to finish on SIGTERM.
  absl::Duration shutdown_grace = absl::Seconds(5);

  // What a stop does to the data plane (SIGTERM, SIGINT).
  enum class StopMode {
    // Guests are told to leave (host_goodbye, doorbells rung and hung up),
    // watchers get HOST_SHUTDOWN, the segment and the state file go.
    kGoodbye,
    // Everything stays for the next shmhubd, which adopts the segment:
    // guests and the host application keep running, watchers reconnect and
    // resume. For upgrades and restarts.
    kHandover,
  };
  StopMode stop_mode = StopMode::kGoodbye;

  // A segment left at segment_path by an earlier shmhubd whose geometry
  // differs from this configuration is refused unless this is set; then it
  // is replaced (its guests are told to leave).
  bool reset_segment = false;

  // The data-plane host application on the local socket
  // (docs/host-protocol.md): how long a recovery of a guest it serves waits
  // for its RECOVERY_READY before it goes ahead anyway (HOST_UNRESPONSIVE).
  absl::Duration host_ack_timeout = absl::Seconds(2);

  // How often the liveness monitor scans the peer table: a fraction of the
  // heartbeat interval so STALE is reported within ~1.25 intervals of the
  // format's threshold.
  absl::Duration ScanInterval() const;
  absl::Duration EffectiveHeartbeatGrace() const;
};

// "goodbye" / "handover".
absl::StatusOr<HubConfig::StopMode> ParseStopMode(absl::string_view text);
absl::string_view StopModeName(HubConfig::StopMode mode);

// Refuses a configuration the daemon cannot run with; the message names the
// flag, the value and the allowed range.
absl::Status ValidateHubConfig(const HubConfig& config);

// Parses --slot_classes: "SIZE:COUNT[,SIZE:COUNT...]", e.g.
// "1024:256,16384:64,262144:8". Sizes must be ascending and >= 8, counts >= 1.
absl::StatusOr<std::vector<shm::SlotClassConfig>> ParseSlotClasses(absl::string_view text);
std::string FormatSlotClasses(const std::vector<shm::SlotClassConfig>& classes);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_CONFIG_HUB_CONFIG_H_
