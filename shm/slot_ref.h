// A reference to one slot of the VarSlotPool, as carried by SLOT_REF entries
// (format §7.3) and returned by the allocator (§8.5). A value type: the
// on-ring bytes are SlotRefBody in format.h.
#ifndef SHMHUB_SHM_SLOT_REF_H_
#define SHMHUB_SHM_SLOT_REF_H_

#include <cstdint>

namespace shmhub::shm {

struct SlotRef {
  uint8_t class_idx = 0;
  uint8_t extent_idx = 0;  // always 0: extents are not implemented (§16)
  uint32_t slot_idx = 0;
  uint32_t generation = 0;

  friend bool operator==(const SlotRef&, const SlotRef&) = default;
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_SLOT_REF_H_
