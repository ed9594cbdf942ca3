// HubMetrics: the daemon's event-driven Prometheus metrics (architecture
// "Metrics"), counted where things happen, kept in one prometheus::Registry
// that the /metrics exposer serves.
//
//   shmhub_events_total{kind}               every event PeerHub publishes
//   shmhub_crashes_total{detector}          CRASHED events, by detector
//   shmhub_recovery_seconds                 RECOVERED events' recovery duration
//   shmhub_crash_detection_seconds          last heartbeat / process exit -> CRASHED
//   shmhub_reservations_total{outcome}      how reservations begin and end
//   shmhub_watch_resyncs_total              RESYNC messages sent to watchers
//   shmhub_host_registered                  1 while a data-plane host application is registered
//   shmhub_host_ack_timeouts_total          recoveries that went ahead without its acknowledgement
//   shmhub_build_info{version}              always 1
//
// Every label value exists from construction on, at 0, so rate() works from
// the first scrape and an alert on a counter that has never moved still has a
// series to evaluate. Readings taken from the segment at scrape time
// (shmhub_peers, heartbeat ages, rings, pool) are SegmentCollector's; the
// grpc_server_* families are RpcMetrics', registered in registry() too.
//
// Histogram buckets follow the configured liveness timing, because fixed
// buckets would put every heartbeat detection of a 100ms-interval daemon and
// of a 10s-interval daemon in the same one or two buckets:
//  - crash detection: a few fixed buckets (1ms..50ms) for the kernel-driven
//    detectors (doorbell hang-up, process exit), then the interval and the
//    staleness threshold (2 x interval), then the crash timeout plus 0, 1/4,
//    1/2, 1, 2 and 4 intervals (a heartbeat detection is always the timeout
//    plus the monitor's lag, which is up to one scan interval = interval / 4
//    on a healthy daemon), then 2x and 4x the timeout for a monitor that fell
//    far behind;
//  - recovery: 1-2.5-5 steps from 10us up to the heartbeat interval.
//    Recovery runs inside a monitoring pass under the hub's lock, so one
//    that takes an interval delays every other guest's liveness check by as
//    much; beyond that the exact value matters less than the alarm (+Inf).
//
// Thread safety: every method is thread-safe and takes no lock of the hub;
// counters are atomics and a histogram observation takes only the
// histogram's own short lock, so PeerHub calls these under its mutex.
#ifndef SHMHUB_SERVER_HUB_HUB_METRICS_H_
#define SHMHUB_SERVER_HUB_HUB_METRICS_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// How a reservation began or ended; the `outcome` label.
enum class ReservationOutcome {
  kGranted,     // ReservePeer took a slot
  kReplayed,    // ReservePeer with a known request_id returned the earlier reservation
  kNoFreeSlot,  // ReservePeer found every slot occupied
  kClaimed,     // a guest claimed a reserved slot
  kExpired,     // the lease ran out unclaimed
  kReleased,    // given back (ReleasePeer, or outside shmhubd)
};

// How a proto enum value appears as a label value: without its prefix, in
// lower case ("EVENT_KIND_RESERVATION_EXPIRED", "EVENT_KIND_" ->
// "reservation_expired"), as operators type it in PromQL.
std::string EnumLabelValue(absl::string_view enum_name, absl::string_view prefix);

// Bucket upper bounds in seconds, strictly ascending; see the file comment.
// `heartbeat_interval` and `crash_timeout` are as ValidateHubConfig accepts
// them (interval >= 1ms, timeout > 2 x interval).
std::vector<double> CrashDetectionBuckets(absl::Duration heartbeat_interval,
                                          absl::Duration crash_timeout);
std::vector<double> RecoveryBuckets(absl::Duration heartbeat_interval);

class HubMetrics {
 public:
  HubMetrics(absl::Duration heartbeat_interval, absl::Duration crash_timeout);

  HubMetrics(const HubMetrics&) = delete;
  HubMetrics& operator=(const HubMetrics&) = delete;

  // Counts `event` by kind; a CRASHED event also by detector, a RECOVERED
  // event's recovery duration goes into the histogram. Kinds and detectors
  // this build does not know are not counted.
  void OnEvent(const v1::PeerEvent& event);
  // Time from the guest's last sign of life to the CRASHED event.
  void ObserveCrashDetection(absl::Duration latency);
  void CountReservation(ReservationOutcome outcome);
  void CountResync();
  // The data-plane host application (docs/host-protocol.md).
  void SetHostRegistered(bool registered);
  void CountHostAckTimeout();

  // What the exposer serves; shared because the exposer holds it weakly.
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  // Indexed by the proto enum values (EventKind 1..14, Detector 1..4);
  // index 0, UNSPECIFIED, stays null.
  std::array<prometheus::Counter*, v1::EventKind_ARRAYSIZE> events_{};
  std::array<prometheus::Counter*, v1::Detector_ARRAYSIZE> crashes_{};
  std::array<prometheus::Counter*, 6> reservations_{};  // by ReservationOutcome
  prometheus::Counter* resyncs_ = nullptr;
  prometheus::Gauge* host_registered_ = nullptr;
  prometheus::Counter* host_ack_timeouts_ = nullptr;
  prometheus::Histogram* crash_detection_ = nullptr;
  prometheus::Histogram* recovery_ = nullptr;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_HUB_METRICS_H_
