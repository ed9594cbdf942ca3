#include "server/hub/segment_collector.h"

#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_type.h"
#include "server/base/monotonic_clock.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/peer_view.h"
#include "shm/peer_table.h"
#include "shm/var_slot_pool.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;

// The published states shmhub_peers reports, every one always present.
constexpr std::array<v1::PeerState, 5> kStates = {v1::PEER_STATE_EMPTY, v1::PEER_STATE_RESERVED,
                                                  v1::PEER_STATE_ATTACHED, v1::PEER_STATE_GOODBYE,
                                                  v1::PEER_STATE_CORRUPT};

// A walk of a free stack that churn made look corrupt is retried this often
// (see the file comment of the header).
constexpr int kFreeCountAttempts = 3;

MetricFamily GaugeFamily(std::string name, std::string help) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddSample(MetricFamily& family, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

// The per-peer families, filled slot by slot.
struct PeerFamilies {
  MetricFamily heartbeat_age = GaugeFamily(
      "shmhub_peer_heartbeat_age_seconds",
      "Seconds since an attached peer's last heartbeat, read from the segment at scrape time "
      "(only peers that have written one).");
  MetricFamily stale =
      GaugeFamily("shmhub_peer_heartbeat_stale",
                  "1 while an attached peer is STALE (no heartbeat for over twice the interval, "
                  "as published on the event stream), else 0.");
  MetricFamily detector_armed = GaugeFamily(
      "shmhub_peer_detector_armed", "1 for each crash detector armed for an attached peer.");
  MetricFamily unmonitored =
      GaugeFamily("shmhub_peer_unmonitored",
                  "1 when an attached peer has no crash detector armed (it never heartbeated "
                  "and has no local-socket detector), else 0.");
  MetricFamily ring_used = GaugeFamily(
      "shmhub_ring_used_bytes",
      "Bytes committed and not yet consumed in an occupied peer slot's ring, by direction.");
};

void CollectPeer(const PeerHub& hub, uint32_t peer_id, const PublishedSlot& published,
                 uint64_t now_ns, PeerFamilies& out) {
  const std::string id = absl::StrCat(peer_id);
  const RingOccupancy rings = ReadRingOccupancy(hub.segment(), peer_id);
  AddSample(out.ring_used, {{"peer_id", id}, {"direction", "guest_to_host"}}, rings.guest_to_host);
  AddSample(out.ring_used, {{"peer_id", id}, {"direction", "host_to_guest"}}, rings.host_to_guest);
  if (published.state != v1::PEER_STATE_ATTACHED) return;

  // Ids 1..max_guests are entries of the host's own table.
  const uint64_t heartbeat = hub.segment().peers().Entry(peer_id)->LastHeartbeat();
  if (heartbeat != 0) {
    AddSample(out.heartbeat_age, {{"peer_id", id}},
              static_cast<double>(ElapsedNs(heartbeat, now_ns)) / 1e9);
  }
  AddSample(out.stale, {{"peer_id", id}}, published.stale ? 1 : 0);
  for (int d = 0; d < v1::Detector_ARRAYSIZE; ++d) {
    if ((published.armed_detectors & (1u << d)) == 0) continue;
    AddSample(out.detector_armed,
              {{"peer_id", id}, {"detector", EnumLabelValue(v1::Detector_Name(d), "DETECTOR_")}},
              1);
  }
  AddSample(out.unmonitored, {{"peer_id", id}}, published.armed_detectors == 0 ? 1 : 0);
}

void CollectPool(const shm::VarSlotPool& pool, MetricFamily& free, MetricFamily& capacity) {
  for (uint32_t k = 0; k < pool.num_classes(); ++k) {
    // The class table is the host's own copy, never read back from the segment.
    const shm::SlotClassConfig& config = pool.class_config(k);
    const std::string label = absl::StrCat(config.slot_size);
    AddSample(capacity, {{"class", label}}, config.slot_count);
    for (int attempt = 0; attempt < kFreeCountAttempts; ++attempt) {
      const absl::StatusOr<uint32_t> count = pool.FreeCount(k);
      if (count.ok()) {
        AddSample(free, {{"class", label}}, *count);
        break;
      }
    }
  }
}

}  // namespace

SegmentCollector::SegmentCollector(const PeerHub& hub, const EventJournal& journal)
    : hub_(hub), journal_(journal) {}

std::vector<MetricFamily> SegmentCollector::Collect() const {
  const uint64_t now_ns = MonotonicNowNs();
  std::array<uint32_t, kStates.size()> by_state{};
  PeerFamilies peers;
  for (uint32_t peer_id = 1; peer_id <= hub_.config().max_guests; ++peer_id) {
    const PublishedSlot published = hub_.PublishedSlotState(peer_id);
    for (size_t s = 0; s < kStates.size(); ++s) {
      if (published.state == kStates[s]) ++by_state[s];
    }
    if (published.state != v1::PEER_STATE_EMPTY) {
      CollectPeer(hub_, peer_id, published, now_ns, peers);
    }
  }

  MetricFamily states =
      GaugeFamily("shmhub_peers", "Peer slots by published state; they add up to --max_guests.");
  for (size_t s = 0; s < kStates.size(); ++s) {
    AddSample(states, {{"state", EnumLabelValue(v1::PeerState_Name(kStates[s]), "PEER_STATE_")}},
              by_state[s]);
  }
  MetricFamily free = GaugeFamily(
      "shmhub_varslot_free",
      "Slots on a pool class's free stack (class = slot size in bytes); approximate while "
      "guests allocate.");
  MetricFamily capacity =
      GaugeFamily("shmhub_varslot_capacity", "Slots in a pool class (class = slot size in bytes).");
  CollectPool(hub_.segment().pool(), free, capacity);
  MetricFamily watchers =
      GaugeFamily("shmhub_watchers", "Open WatchEvents subscriptions to the event journal.");
  AddSample(watchers, {}, static_cast<double>(journal_.subscription_count()));

  std::vector<MetricFamily> families;
  for (MetricFamily* family : {&states, &peers.heartbeat_age, &peers.stale, &peers.detector_armed,
                               &peers.unmonitored, &peers.ring_used, &free, &capacity, &watchers}) {
    if (!family->metric.empty()) families.push_back(std::move(*family));
  }
  return families;
}

}  // namespace shmhub::server
