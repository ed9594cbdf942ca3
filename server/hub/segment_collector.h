// SegmentCollector: the /metrics families that describe the hub's current
// state, built at scrape time from the segment and the slots' published
// states, so every scrape is current and nothing has to keep gauges in step:
//
//   shmhub_peers{state}                             slots by published state (all five)
//   shmhub_peer_heartbeat_age_seconds{peer_id}      attached peers that have heartbeated
//   shmhub_peer_heartbeat_stale{peer_id}            attached peers: STALE published, 0/1
//   shmhub_peer_detector_armed{peer_id,detector}    1 per armed detector of an attached peer
//   shmhub_peer_unmonitored{peer_id}                attached peers: no detector armed, 0/1
//   shmhub_ring_used_bytes{peer_id,direction}       occupied slots, both rings
//   shmhub_varslot_free{class}, shmhub_varslot_capacity{class}   per pool class (slot size)
//   shmhub_watchers                                 open event subscriptions
//
// An Empty slot produces no per-peer series, so a recovered guest's series
// disappear at the next scrape instead of lingering at their last values.
//
// Locks: a scrape never takes the hub's mutex, which a recovery holds for a
// whole procedure. Published states come from PeerHub's lock-free mirror;
// heartbeats, ring words and pool heads are loaded from the segment, where
// every value is guest-writable and bounded before use (ages saturate at 0
// for a heartbeat from the future, ring occupancy is clamped to the ring's
// capacity, a pool walk is bounded by the class's slot count). The watcher
// count takes the journal's lock, which is held only for an append or a
// subscribe, never across I/O or a recovery.
//
// Consistency: readings are taken one by one, while guests and the monitor
// carry on, so families may disagree by a transition that happened during
// the scrape. The free-slot count walks a lock-free stack that may change
// under it; a walk the churn makes look corrupt is retried a few times and
// the class's free series is left out of that scrape if it never completes.
//
// Lifetime: `hub` and `journal` must outlive every Collect() call. Remove
// the collector from the exposer (which waits for a running scrape) before
// destroying them.
//
// Thread safety: Collect() may run on any number of threads at once.
#ifndef SHMHUB_SERVER_HUB_SEGMENT_COLLECTOR_H_
#define SHMHUB_SERVER_HUB_SEGMENT_COLLECTOR_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/hub/event_journal.h"
#include "server/hub/peer_hub.h"

namespace shmhub::server {

class SegmentCollector final : public prometheus::Collectable {
 public:
  SegmentCollector(const PeerHub& hub, const EventJournal& journal);

  SegmentCollector(const SegmentCollector&) = delete;
  SegmentCollector& operator=(const SegmentCollector&) = delete;

  // Families with no series (e.g. no attached peer) are left out.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const PeerHub& hub_;
  const EventJournal& journal_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_SEGMENT_COLLECTOR_H_
