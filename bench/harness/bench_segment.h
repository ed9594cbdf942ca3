// BenchSegment: the host side of a real hub segment that exists only for one
// benchmark run, in a private directory under /dev/shm (tmpfs, as in
// production; /tmp when /dev/shm is missing).
//
// Each two-process measurement takes one occupancy of a peer slot: the
// parent Reserve()s it, the forked child claims it with the fenced CAS a
// real guest uses, and once the child has left the parent runs the format's
// recovery procedure (shm::RecoverPeer, as shmhubd would), which resets both
// rings and reclaims any pool slot the child still owned, so the next
// measurement starts from the same clean state.
//
// The destructor removes the segment file and the directory. Not
// thread-safe; the child must never destroy this object (it leaves with
// _exit), or it would remove the parent's file.
#ifndef SHMHUB_BENCH_HARNESS_BENCH_SEGMENT_H_
#define SHMHUB_BENCH_HARNESS_BENCH_SEGMENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shm/segment.h"

namespace shmhub::bench {

// shmhubd's default geometry (server/config/hub_config.h) with
// heartbeats off: what a deployment runs with unless it tunes the flags.
shm::SegmentConfig DefaultDaemonGeometry();

class BenchSegment {
 public:
  static absl::StatusOr<std::unique_ptr<BenchSegment>> Create(const shm::SegmentConfig& config);
  ~BenchSegment();
  BenchSegment(const BenchSegment&) = delete;
  BenchSegment& operator=(const BenchSegment&) = delete;

  shm::Segment& host() const { return *segment_; }
  const std::string& path() const { return segment_->path(); }

  // Moves peer `peer_id` from Empty to Reserved; returns the new epoch.
  absl::StatusOr<uint32_t> Reserve(uint32_t peer_id) const;
  // Recovers occupancy (peer_id, epoch) so the slot is Empty again. A
  // reservation never claimed is released instead.
  absl::Status Recover(uint32_t peer_id, uint32_t epoch) const;
  // The free count of every pool class, in class order.
  absl::StatusOr<std::vector<uint32_t>> FreeCounts() const;

 private:
  BenchSegment(std::string dir, std::unique_ptr<shm::Segment> segment)
      : dir_(std::move(dir)), segment_(std::move(segment)) {}

  std::string dir_;
  std::unique_ptr<shm::Segment> segment_;
};

// In the child: attaches the segment at `path` as a guest (full §3
// validation) and claims the reserved occupancy (peer_id, epoch).
absl::StatusOr<std::unique_ptr<shm::Segment>> AttachAndClaim(const std::string& path,
                                                             uint32_t peer_id, uint32_t epoch);

// In the child, when it is done: stores Goodbye on its occupancy, as an
// orderly guest does before it leaves.
absl::Status SayGoodbye(const shm::Segment& segment, uint32_t peer_id, uint32_t epoch);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_BENCH_SEGMENT_H_
