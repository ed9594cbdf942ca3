// MmapRegionSender: where a link's MMAP_REF payloads live (format §9) —
// memfd regions announced once over the mapping-control socket and reused.
//
// A region is a sealed-against-shrinking memfd of max(4 MiB, payload) bytes,
// mapped read-write here and announced as (map_id, 0, length) with its fd
// before the first entry that names it (§9.2; map_id counts up from 0 and
// the generation is always 0, like Rust's registry, §9.4). Payloads are
// bump-allocated inside it.
//
// Reuse, and why it is safe. The format has no message that gives a region
// back, and a receiver keeps every region it was sent mapped for the
// link's lifetime, so regions are never dropped; instead their bytes are
// rewritten once the receiver is done with them. The receiver's ring `read`
// index tells us: a receiver gives ring bytes back strictly in ring order and
// only after it has released the payload an entry names (RingLink's
// contract: "ring space is given back in ring order, so an older view still
// held keeps newer ring bytes reserved"). So once the consumer's position
// (RingProgress, the lower candidate) has passed the end of an MMAP_REF
// entry, nothing will read that payload again. Each placement is recorded
// with its entry's end position; a region whose placements have all been
// passed is idle and its bump pointer goes back to 0. Interop caveat: a
// receiver that gives the ring entry back while still reading the payload
// (the spec does not forbid it) could see bytes of a later payload; ours
// never does.
//
// At most kMaxRegions regions are made while an existing one could hold the
// payload; beyond that the sender waits for one to go idle (backpressure).
// A payload larger than every region gets a new region regardless, so
// memory is bounded by kMaxRegions times the largest payload (or 4 MiB).
//
// Not thread-safe: the sending thread owns it.
#ifndef SHMHUB_CLIENT_LINK_MMAP_REGION_SENDER_H_
#define SHMHUB_CLIENT_LINK_MMAP_REGION_SENDER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/unique_fd.h"

namespace shmhub::client {

class MmapRegionSender {
 public:
  static constexpr uint64_t kMinRegionBytes = uint64_t{4} << 20;
  static constexpr size_t kMaxRegions = 8;

  // Sends announcements on `control_fd` (the link's mapping-control socket).
  explicit MmapRegionSender(shm::UniqueFd control_fd);
  ~MmapRegionSender();
  MmapRegionSender(const MmapRegionSender&) = delete;
  MmapRegionSender& operator=(const MmapRegionSender&) = delete;

  struct Placement {
    size_t region = 0;
    uint32_t map_id = 0;
    uint64_t offset = 0;
    absl::Span<uint8_t> bytes;  // where to copy the payload
  };

  // Forgets placements whose entries end at or before `consumer_position`,
  // then finds `len` bytes: in the current region, in an idle one, or in a
  // new one (made and announced now). nullopt: every region is busy and no
  // new one may be made — wait for the consumer. Errors: kIo (memfd,
  // ftruncate, mmap) and the mapping-control send's errors
  // (kMappingPeerClosed when the peer is gone).
  absl::StatusOr<std::optional<Placement>> Place(uint32_t len, uint64_t consumer_position);

  // Records that the entry naming `placement` was committed and ends at
  // stream position `entry_end`.
  void Track(const Placement& placement, uint64_t entry_end);

 private:
  struct Region {
    uint8_t* base = nullptr;
    uint64_t size = 0;
    uint64_t used = 0;       // bump pointer
    uint32_t in_flight = 0;  // tracked placements not yet passed
    uint32_t map_id = 0;
  };
  struct InFlight {
    uint64_t entry_end;
    size_t region;
  };

  void Retire(uint64_t consumer_position);
  absl::StatusOr<size_t> MakeRegion(uint64_t min_bytes);
  Placement PlaceIn(size_t index, uint32_t len);

  shm::UniqueFd control_fd_;
  std::vector<Region> regions_;
  std::deque<InFlight> in_flight_;
  size_t current_ = 0;  // the region bump allocation continues in
  uint32_t next_map_id_ = 0;
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_MMAP_REGION_SENDER_H_
