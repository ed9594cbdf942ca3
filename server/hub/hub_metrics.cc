#include "server/hub/hub_metrics.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "prometheus/gauge.h"
#include "server/base/proto_time.h"

namespace shmhub::server {
namespace {

constexpr std::array<ReservationOutcome, 6> kOutcomes = {
    ReservationOutcome::kGranted, ReservationOutcome::kReplayed, ReservationOutcome::kNoFreeSlot,
    ReservationOutcome::kClaimed, ReservationOutcome::kExpired,  ReservationOutcome::kReleased,
};

const char* OutcomeLabel(ReservationOutcome outcome) {
  switch (outcome) {
    case ReservationOutcome::kGranted:
      return "granted";
    case ReservationOutcome::kReplayed:
      return "replayed";
    case ReservationOutcome::kNoFreeSlot:
      return "no_free_slot";
    case ReservationOutcome::kClaimed:
      return "claimed";
    case ReservationOutcome::kExpired:
      return "expired";
    case ReservationOutcome::kReleased:
      return "released";
  }
  return "unknown";
}

// One counter per value of `descriptor` but UNSPECIFIED (0), stored at the
// value's index, under label `label`.
template <size_t N>
void AddPerEnumValue(const google::protobuf::EnumDescriptor& descriptor, absl::string_view prefix,
                     const std::string& label, prometheus::Family<prometheus::Counter>& family,
                     std::array<prometheus::Counter*, N>& out) {
  for (int i = 0; i < descriptor.value_count(); ++i) {
    const google::protobuf::EnumValueDescriptor& value = *descriptor.value(i);
    if (value.number() <= 0 || static_cast<size_t>(value.number()) >= N) continue;
    out[static_cast<size_t>(value.number())] =
        &family.Add({{label, EnumLabelValue(value.name(), prefix)}});
  }
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// Bounds are built as absl::Duration: exact (2.5ms is exactly 2500us, so no
// step lands a rounding error below its neighbour) and saturating, so a
// huge --crash_timeout gives an infinite candidate, which is dropped (the
// +Inf bucket always exists), instead of an overflow.

// Adds the 1-2.5-5 steps of each decade from `from` while below `to`.
void AppendDecadeSteps(absl::Duration from, absl::Duration to, std::vector<absl::Duration>& out) {
  for (absl::Duration decade = from; decade < to; decade *= 10) {
    for (const int tenths : {10, 25, 50}) {
      const absl::Duration bound = decade * tenths / 10;
      if (bound < to) out.push_back(bound);
    }
  }
}

// In seconds, sorted, finite, without duplicates: several candidates
// coincide for some configs (e.g. a 25ms interval is also a fixed bucket).
std::vector<double> AscendingSeconds(std::vector<absl::Duration> bounds) {
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  std::vector<double> seconds;
  seconds.reserve(bounds.size());
  for (const absl::Duration bound : bounds) {
    if (bound != absl::InfiniteDuration()) seconds.push_back(Seconds(bound));
  }
  return seconds;
}

}  // namespace

std::string EnumLabelValue(absl::string_view enum_name, absl::string_view prefix) {
  absl::ConsumePrefix(&enum_name, prefix);
  return absl::AsciiStrToLower(enum_name);
}

std::vector<double> CrashDetectionBuckets(absl::Duration heartbeat_interval,
                                          absl::Duration crash_timeout) {
  std::vector<absl::Duration> bounds;
  // 1ms..50ms: the kernel-driven detectors.
  AppendDecadeSteps(absl::Milliseconds(1), absl::Milliseconds(100), bounds);
  bounds.push_back(heartbeat_interval);
  bounds.push_back(2 * heartbeat_interval);  // the staleness threshold
  // In quarters of an interval, the scan interval.
  for (const int quarters : {0, 1, 2, 4, 8, 16}) {
    bounds.push_back(crash_timeout + quarters * heartbeat_interval / 4);
  }
  bounds.push_back(2 * crash_timeout);
  bounds.push_back(4 * crash_timeout);
  return AscendingSeconds(std::move(bounds));
}

std::vector<double> RecoveryBuckets(absl::Duration heartbeat_interval) {
  std::vector<absl::Duration> bounds;
  AppendDecadeSteps(absl::Microseconds(10), heartbeat_interval, bounds);
  bounds.push_back(heartbeat_interval);
  return AscendingSeconds(std::move(bounds));
}

HubMetrics::HubMetrics(absl::Duration heartbeat_interval, absl::Duration crash_timeout)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Family<prometheus::Counter>& events =
      prometheus::BuildCounter()
          .Name("shmhub_events_total")
          .Help("Peer events published on the event stream, by kind.")
          .Register(*registry_);
  AddPerEnumValue(*v1::EventKind_descriptor(), "EVENT_KIND_", "kind", events, events_);

  prometheus::Family<prometheus::Counter>& crashes =
      prometheus::BuildCounter()
          .Name("shmhub_crashes_total")
          .Help("Guests declared crashed, by the detector that noticed.")
          .Register(*registry_);
  AddPerEnumValue(*v1::Detector_descriptor(), "DETECTOR_", "detector", crashes, crashes_);

  prometheus::Family<prometheus::Counter>& reservations =
      prometheus::BuildCounter()
          .Name("shmhub_reservations_total")
          .Help(
              "Reservation outcomes: granted, replayed or refused (no_free_slot) by "
              "ReservePeer, then claimed by a guest, expired unclaimed, or released.")
          .Register(*registry_);
  for (const ReservationOutcome outcome : kOutcomes) {
    reservations_[static_cast<size_t>(outcome)] =
        &reservations.Add({{"outcome", OutcomeLabel(outcome)}});
  }

  resyncs_ = &prometheus::BuildCounter()
                  .Name("shmhub_watch_resyncs_total")
                  .Help("RESYNC messages sent to watchers (each is followed by a snapshot).")
                  .Register(*registry_)
                  .Add({});

  host_registered_ = &prometheus::BuildGauge()
                          .Name("shmhub_host_registered")
                          .Help("1 while a data-plane host application is registered on the "
                                "local socket, else 0.")
                          .Register(*registry_)
                          .Add({});
  host_ack_timeouts_ =
      &prometheus::BuildCounter()
           .Name("shmhub_host_ack_timeouts_total")
           .Help("Recoveries that went ahead because the registered host application did not "
                 "acknowledge them within --host_ack_timeout (event HOST_UNRESPONSIVE).")
           .Register(*registry_)
           .Add({});

  crash_detection_ =
      &prometheus::BuildHistogram()
           .Name("shmhub_crash_detection_seconds")
           .Help(
               "Time from a crashed guest's last heartbeat, or its process exit, to the "
               "CRASHED event.")
           .Register(*registry_)
           .Add({}, CrashDetectionBuckets(heartbeat_interval, crash_timeout));

  recovery_ = &prometheus::BuildHistogram()
                   .Name("shmhub_recovery_seconds")
                   .Help(
                       "Duration of the recovery procedure that reclaims a departed or "
                       "crashed guest's slot (format section 14).")
                   .Register(*registry_)
                   .Add({}, RecoveryBuckets(heartbeat_interval));

  prometheus::BuildGauge()
      .Name("shmhub_build_info")
      .Help("Always 1; the version label names the running shmhubd.")
      .Register(*registry_)
      .Add({{"version", SHMHUB_VERSION}})
      .Set(1);
}

void HubMetrics::OnEvent(const v1::PeerEvent& event) {
  const auto kind = static_cast<size_t>(event.kind());
  if (kind < events_.size() && events_[kind] != nullptr) events_[kind]->Increment();
  if (event.kind() == v1::EVENT_KIND_CRASHED) {
    const auto detector = static_cast<size_t>(event.detector());
    if (detector < crashes_.size() && crashes_[detector] != nullptr) {
      crashes_[detector]->Increment();
    }
  }
  if (event.kind() == v1::EVENT_KIND_RECOVERED && event.has_recovery()) {
    const std::optional<absl::Duration> took = FromProtoDuration(event.recovery().duration());
    if (took.has_value()) recovery_->Observe(Seconds(*took));
  }
}

void HubMetrics::ObserveCrashDetection(absl::Duration latency) {
  crash_detection_->Observe(Seconds(latency));
}

void HubMetrics::CountReservation(ReservationOutcome outcome) {
  reservations_[static_cast<size_t>(outcome)]->Increment();
}

void HubMetrics::CountResync() { resyncs_->Increment(); }

void HubMetrics::SetHostRegistered(bool registered) { host_registered_->Set(registered ? 1 : 0); }

void HubMetrics::CountHostAckTimeout() { host_ack_timeouts_->Increment(); }

}  // namespace shmhub::server
