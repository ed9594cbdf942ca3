#include "server/config/hub_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/match.h"

// Defaults come from HubConfig so the flags and in-process tests agree.
namespace {
const shmhub::server::HubConfig& Defaults() {
  static const shmhub::server::HubConfig* const defaults = new shmhub::server::HubConfig();
  return *defaults;
}
}  // namespace

ABSL_FLAG(std::string, segment, Defaults().segment_path,
          "Absolute path of the shared-memory segment shmhubd creates (mode 0660) and "
          "removes at shutdown. A stale file left by a crashed daemon is replaced; a "
          "segment still in use by another daemon is refused.");
ABSL_FLAG(uint32_t, max_guests, Defaults().max_guests,
          "Number of guest peer slots in the segment, 1..255.");
ABSL_FLAG(uint32_t, ring_bytes, Defaults().ring_bytes,
          "Data bytes of each guest's ring, per direction (guest->host and host->guest), "
          "64..1073741824.");
ABSL_FLAG(std::string, slot_classes, shmhub::server::FormatSlotClasses(Defaults().slot_classes),
          "The shared slot pool as SIZE:COUNT[,SIZE:COUNT...]: slot size in bytes "
          "(>= 8, strictly ascending) and number of slots of that size.");
ABSL_FLAG(uint32_t, max_payload_size, Defaults().max_payload_size,
          "Largest payload in bytes a guest may send in one frame, >= 1.");
ABSL_FLAG(absl::Duration, heartbeat_interval, Defaults().heartbeat_interval,
          "How often guests are expected to heartbeat (written into the segment header), "
          "1ms..1h. A guest is STALE when its heartbeat is older than twice this.");
ABSL_FLAG(absl::Duration, crash_timeout, Defaults().crash_timeout,
          "Heartbeat silence after which a guest is declared CRASHED and its slot "
          "recovered. Must exceed 2 x --heartbeat_interval.");
ABSL_FLAG(bool, require_heartbeat, Defaults().require_heartbeat,
          "If true, a guest that writes no heartbeat within --heartbeat_grace of attaching "
          "is declared crashed. If false, the heartbeat detector is armed at a guest's "
          "first heartbeat (guests that never heartbeat stay unmonitored by it).");
ABSL_FLAG(absl::Duration, heartbeat_grace, Defaults().heartbeat_grace,
          "With --require_heartbeat: how long after attaching a guest may go without its "
          "first heartbeat, >= 0. 0 means --crash_timeout.");
ABSL_FLAG(absl::Duration, default_lease_ttl, Defaults().default_lease_ttl,
          "Lease of a ReservePeer call that sets no lease_ttl: how long the reservation "
          "waits to be claimed before it is released (RESERVATION_EXPIRED). "
          "1ms..--max_lease_ttl.");
ABSL_FLAG(absl::Duration, max_lease_ttl, Defaults().max_lease_ttl,
          "Largest lease_ttl a ReservePeer call may ask for, 1ms..168h.");
ABSL_FLAG(uint32_t, journal_capacity, Defaults().journal_capacity,
          "Events kept in memory for watchers that resume after a sequence number, "
          "16..1048576. Older resume points get RESYNC + snapshot.");
ABSL_FLAG(uint32_t, watcher_queue, Defaults().watcher_queue,
          "Undelivered events per watcher, 1..1048576. A watcher that falls further behind "
          "gets RESYNC(SLOW_WATCHER) + snapshot instead of the missed events.");
ABSL_FLAG(uint32_t, max_watchers, Defaults().max_watchers,
          "Concurrent WatchEvents streams, 1..100000. More are refused with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, watch_progress_interval, Defaults().watch_progress_interval,
          "A watch stream with no events for this long gets a PROGRESS message carrying "
          "the current sequence number, 10ms..1h.");
ABSL_FLAG(std::string, listen, Defaults().listen,
          "host:port the gRPC API listens on (plaintext). Port 0 picks a free port; the "
          "chosen one is printed at startup.");
ABSL_FLAG(std::string, metrics_listen, Defaults().metrics_listen,
          "host:port the Prometheus /metrics endpoint listens on (plain HTTP). Port 0 picks "
          "a free port; the chosen one is printed at startup. Empty: no /metrics endpoint.");
ABSL_FLAG(std::string, socket, Defaults().socket_path,
          "Path of the local Unix socket guests on this node connect to for bootstrap "
          "(they receive the segment, their doorbell and peer id over it) and which gives "
          "immediate crash detection (doorbell hang-up, process exit). Default: "
          "/run/shmhub/hub.sock, or /tmp/shmhub-<uid>/hub.sock when /run is not writable. "
          "Empty: no local socket.");
ABSL_FLAG(absl::Duration, shutdown_grace, Defaults().shutdown_grace,
          "On SIGTERM/SIGINT: how long watchers get to receive HOST_SHUTDOWN and "
          "in-flight RPCs get to finish before they are cancelled, 0..5m.");
ABSL_FLAG(absl::Duration, host_ack_timeout, Defaults().host_ack_timeout,
          "How long the recovery of a guest waits for the data-plane host application "
          "registered on --socket to release it (RECOVERY_READY: its link to the guest is "
          "stopped and it holds no view of the guest's payloads), 1ms..10m. Then the event "
          "HOST_UNRESPONSIVE is published and recovery goes ahead. Without a registered host "
          "application recovery never waits.");

ABSL_FLAG(std::string, stop_mode, "goodbye",
          "What SIGTERM/SIGINT does to the data plane. goodbye: guests are told to leave "
          "(host_goodbye), watchers get HOST_SHUTDOWN, the segment and its state file are "
          "removed. handover: everything is left for the next shmhubd on the same --segment, "
          "which adopts it; guests and the host application keep running and watchers "
          "resume. Use handover for upgrades and restarts.");
ABSL_FLAG(bool, reset_segment, false,
          "Replace a segment an earlier shmhubd left at --segment whose geometry "
          "(--max_guests, --ring_bytes, --slot_classes, --max_payload_size, "
          "--heartbeat_interval) differs from this daemon's, instead of refusing to start. "
          "Its guests are told to leave; epochs still never repeat.");

namespace shmhub::server {

absl::StatusOr<HubConfig> HubConfigFromFlags() {
  HubConfig config;
  config.segment_path = absl::GetFlag(FLAGS_segment);
  config.max_guests = absl::GetFlag(FLAGS_max_guests);
  config.ring_bytes = absl::GetFlag(FLAGS_ring_bytes);
  absl::StatusOr<std::vector<shm::SlotClassConfig>> classes =
      ParseSlotClasses(absl::GetFlag(FLAGS_slot_classes));
  if (!classes.ok()) return classes.status();
  config.slot_classes = *std::move(classes);
  config.max_payload_size = absl::GetFlag(FLAGS_max_payload_size);
  config.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  config.crash_timeout = absl::GetFlag(FLAGS_crash_timeout);
  config.require_heartbeat = absl::GetFlag(FLAGS_require_heartbeat);
  config.heartbeat_grace = absl::GetFlag(FLAGS_heartbeat_grace);
  config.default_lease_ttl = absl::GetFlag(FLAGS_default_lease_ttl);
  config.max_lease_ttl = absl::GetFlag(FLAGS_max_lease_ttl);
  config.journal_capacity = absl::GetFlag(FLAGS_journal_capacity);
  config.watcher_queue = absl::GetFlag(FLAGS_watcher_queue);
  config.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  config.watch_progress_interval = absl::GetFlag(FLAGS_watch_progress_interval);
  config.listen = absl::GetFlag(FLAGS_listen);
  config.socket_path = absl::GetFlag(FLAGS_socket);
  config.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  config.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  config.host_ack_timeout = absl::GetFlag(FLAGS_host_ack_timeout);
  absl::StatusOr<HubConfig::StopMode> stop_mode = ParseStopMode(absl::GetFlag(FLAGS_stop_mode));
  if (!stop_mode.ok()) return stop_mode.status();
  config.stop_mode = *stop_mode;
  config.reset_segment = absl::GetFlag(FLAGS_reset_segment);
  if (absl::Status status = ValidateHubConfig(config); !status.ok()) return status;
  return config;
}

bool IsHubFlagsFile(absl::string_view filename) {
  return absl::EndsWith(filename, "server/config/hub_flags.cc");
}

std::string NormalizeFlagsFile(absl::string_view filename) {
  const size_t folder = filename.rfind("server/");
  return std::string(folder == absl::string_view::npos ? filename : filename.substr(folder));
}

}  // namespace shmhub::server
