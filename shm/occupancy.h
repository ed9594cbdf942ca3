// Occupancy: one tenancy of a peer slot, named by (peer_id, epoch).
//
// The epoch of a slot goes up each time an Empty entry is taken and never
// otherwise (format §5.3), so the pair names one occupancy for the life of
// the segment and fences every operation on it: an operation given an
// occupancy that has ended finds another epoch and changes nothing. Every
// layer passes the pair as this one type: the peer table (what a take
// returns), the daemon's slot model, the host application's records and the
// command line.
//
// Thread safety: a value type.
#ifndef SHMHUB_SHM_OCCUPANCY_H_
#define SHMHUB_SHM_OCCUPANCY_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace shmhub::shm {

struct Occupancy {
  uint32_t peer_id = 0;
  uint32_t epoch = 0;

  friend bool operator==(const Occupancy&, const Occupancy&) = default;

  // "peer 3 epoch 7", for messages and logs.
  std::string ToString() const { return absl::StrCat("peer ", peer_id, " epoch ", epoch); }
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_OCCUPANCY_H_
