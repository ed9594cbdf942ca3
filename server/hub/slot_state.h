// A SlotRecord as the state log keeps it (hub_state.proto's Slot), and back:
// what a successor needs to continue a slot's occupancy, nothing of its
// liveness bookkeeping (that restarts from the segment).
//
// Thread safety: pure functions.
#ifndef SHMHUB_SERVER_HUB_SLOT_STATE_H_
#define SHMHUB_SERVER_HUB_SLOT_STATE_H_

#include <cstdint>

#include "server/hub/slot_record.h"
#include "shmhub/state/v1/hub_state.pb.h"

namespace shmhub::server {

state::v1::Slot SlotToState(const SlotRecord& record, uint32_t epoch_floor);

// Restores `slot` into `record` (same peer id). Values out of range (a
// state the API does not know, a lease that does not parse) are dropped.
void RestoreSlot(const state::v1::Slot& slot, SlotRecord* record);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_SLOT_STATE_H_
