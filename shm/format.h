// The on-segment structures of the hub format, version 7
// (docs/segment-format.md §3, §5, §6, §7, §8).
//
// Every struct here is an overlay on shared memory that any guest can write
// at any time. They are trivially copyable, standard layout and built only of
// fixed-width integers. Fields the format marks atomic are declared as plain
// integers and are accessed only through std::atomic_ref (format §1.3); every
// other field is written once by the creator before publication and must
// still be validated by whoever reads it (§1.7).
#ifndef SHMHUB_SHM_FORMAT_H_
#define SHMHUB_SHM_FORMAT_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmhub::shm {

static_assert(std::endian::native == std::endian::little,
              "the hub format is little-endian and we store native integers");
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free,
              "cross-process atomics must be lock-free");
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free,
              "cross-process atomics must be lock-free");

// One of the format's atomic u32 fields (a ring index, a watermark), as the
// atomic it is (§1.3).
inline std::atomic_ref<uint32_t> AtomicWord(uint32_t& word) {
  return std::atomic_ref<uint32_t>(word);
}

// ---- Constants (§3, §5, §8) ------------------------------------------------

// "TELXHUB" followed by 0x07, read as a little-endian u64.
inline constexpr uint64_t kMagic = 0x07425548584C4554ULL;
inline constexpr uint32_t kVersion = 7;
inline constexpr uint32_t kHeaderSize = 128;
inline constexpr uint32_t kDefaultInlineThreshold = 256;
inline constexpr uint32_t kMaxGuests = 255;
inline constexpr uint64_t kPeerTableOffset = 128;
inline constexpr uint64_t kPeerEntrySize = 64;
inline constexpr uint64_t kRingHeaderSize = 128;
inline constexpr uint64_t kClassHeaderSize = 64;
inline constexpr uint64_t kSlotMetaSize = 16;
// Ring indexes are u32; capping the capacity at 2^31 keeps `index + n`
// arithmetic on valid values from overflowing 32 bits (§3 step 6).
inline constexpr uint64_t kMaxRingCapacity = uint64_t{1} << 31;
// class_idx is a u8 on the wire (§3 step 7).
inline constexpr uint32_t kMaxSlotClasses = 256;
// End-of-list marker of the slot free stacks (§8.1).
inline constexpr uint32_t kSlotEnd = 0xFFFFFFFFu;
inline constexpr uint32_t kMaxSlotCount = 0xFFFFFFFEu;
// Peer id 0 names the host: it owns slots but never indexes the table (§5.2).
inline constexpr uint32_t kHostPeerId = 0;

// ---- Peer entry states (§5.1) ------------------------------------------------

enum class PeerState : uint32_t {
  kEmpty = 0,
  kAttached = 1,
  kGoodbye = 2,
  kReserved = 3,
};

// ---- Frame flags (§7.1) --------------------------------------------------------

inline constexpr uint8_t kFrameFlagSlotRef = 0x01;
inline constexpr uint8_t kFrameFlagMmapRef = 0x02;
inline constexpr uint32_t kFrameHeaderSize = 8;
inline constexpr uint32_t kSlotRefFrameSize = 20;
inline constexpr uint32_t kMmapRefFrameSize = 32;

// ---- Slot states (§8.1) --------------------------------------------------------

inline constexpr uint32_t kSlotFree = 0;
inline constexpr uint32_t kSlotAllocated = 1;

// ---- Segment header: 128 bytes at offset 0 (§3) ------------------------------

struct SegmentHeader {
  uint64_t magic;                 // atomic: published last with release (D-5)
  uint32_t version;
  uint32_t header_size;
  uint64_t total_size;
  uint32_t max_payload_size;
  uint32_t inline_threshold;      // 0 means kDefaultInlineThreshold
  uint32_t max_guests;
  uint32_t bipbuf_capacity;
  uint64_t peer_table_offset;
  uint64_t var_pool_offset;
  uint64_t heartbeat_interval_ns;  // 0 turns heartbeats off
  uint32_t host_goodbye;           // atomic
  uint32_t num_var_slot_classes;   // "reserved" in the spec, used by Rust
  uint64_t current_size;           // atomic
  uint8_t reserved[48];
};

static_assert(sizeof(SegmentHeader) == 128);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, version) == 8);
static_assert(offsetof(SegmentHeader, header_size) == 12);
static_assert(offsetof(SegmentHeader, total_size) == 16);
static_assert(offsetof(SegmentHeader, max_payload_size) == 24);
static_assert(offsetof(SegmentHeader, inline_threshold) == 28);
static_assert(offsetof(SegmentHeader, max_guests) == 32);
static_assert(offsetof(SegmentHeader, bipbuf_capacity) == 36);
static_assert(offsetof(SegmentHeader, peer_table_offset) == 40);
static_assert(offsetof(SegmentHeader, var_pool_offset) == 48);
static_assert(offsetof(SegmentHeader, heartbeat_interval_ns) == 56);
static_assert(offsetof(SegmentHeader, host_goodbye) == 64);
static_assert(offsetof(SegmentHeader, num_var_slot_classes) == 68);
static_assert(offsetof(SegmentHeader, current_size) == 72);
static_assert(offsetof(SegmentHeader, reserved) == 80);
static_assert(offsetof(SegmentHeader, magic) % sizeof(uint64_t) == 0);
static_assert(offsetof(SegmentHeader, host_goodbye) % sizeof(uint32_t) == 0);
static_assert(offsetof(SegmentHeader, current_size) % sizeof(uint64_t) == 0);

// ---- Peer entry: 64 bytes at 128 + 64 * (peer_id - 1) (§5.1) ----------------

struct PeerEntry {
  uint32_t state;           // atomic; PeerState, any other value is invalid
  uint32_t epoch;           // atomic; with `state` forms one u64 pair (§1.6)
  uint64_t last_heartbeat;  // atomic; CLOCK_MONOTONIC ns, 0 = none yet
  uint64_t ring_offset;     // plain; start of this guest's ring pair
  uint8_t reserved[40];
};

static_assert(sizeof(PeerEntry) == kPeerEntrySize);
static_assert(offsetof(PeerEntry, state) == 0);
static_assert(offsetof(PeerEntry, epoch) == 4);
static_assert(offsetof(PeerEntry, last_heartbeat) == 8);
static_assert(offsetof(PeerEntry, ring_offset) == 16);
static_assert(offsetof(PeerEntry, reserved) == 24);
static_assert(offsetof(PeerEntry, state) % sizeof(uint64_t) == 0,
              "state|epoch is accessed as one 64-bit atomic pair");
static_assert(offsetof(PeerEntry, last_heartbeat) % sizeof(uint64_t) == 0);

// ---- Ring header: 128 bytes, two cache lines (§6.1) ----------------------------

struct RingHeader {
  uint32_t write;      // atomic; producer
  uint32_t watermark;  // atomic; set by the producer on wrap, cleared by consumer
  uint32_t capacity;   // plain; equals SegmentHeader::bipbuf_capacity
  uint8_t pad0[52];
  uint32_t read;       // atomic; consumer, on its own cache line
  uint8_t pad1[60];
};

static_assert(sizeof(RingHeader) == kRingHeaderSize);
static_assert(offsetof(RingHeader, write) == 0);
static_assert(offsetof(RingHeader, watermark) == 4);
static_assert(offsetof(RingHeader, capacity) == 8);
static_assert(offsetof(RingHeader, pad0) == 12);
static_assert(offsetof(RingHeader, read) == 64);
static_assert(offsetof(RingHeader, pad1) == 68);

// ---- Entry framing inside a ring (§7) ------------------------------------------
// Entries are only 4-byte aligned: copy these in and out with memcpy.

struct FrameHeader {
  uint32_t total_len;   // whole entry including this header, multiple of 4
  uint8_t flags;        // kFrameFlagSlotRef / kFrameFlagMmapRef / 0 = inline
  uint8_t reserved;
  uint16_t inline_len;  // inline payload length; 0 = total_len - 8
};

static_assert(sizeof(FrameHeader) == kFrameHeaderSize);
static_assert(offsetof(FrameHeader, total_len) == 0);
static_assert(offsetof(FrameHeader, flags) == 4);
static_assert(offsetof(FrameHeader, reserved) == 5);
static_assert(offsetof(FrameHeader, inline_len) == 6);

// Body of a SLOT_REF entry, at entry offset 8 (§7.3).
struct SlotRefBody {
  uint8_t class_idx;
  uint8_t extent_idx;  // always 0 (§16)
  uint16_t reserved;
  uint32_t slot_idx;
  uint32_t generation;
};

static_assert(sizeof(SlotRefBody) == 12);
static_assert(offsetof(SlotRefBody, class_idx) == 0);   // entry offset 8
static_assert(offsetof(SlotRefBody, extent_idx) == 1);  // entry offset 9
static_assert(offsetof(SlotRefBody, reserved) == 2);    // entry offset 10
static_assert(offsetof(SlotRefBody, slot_idx) == 4);    // entry offset 12
static_assert(offsetof(SlotRefBody, generation) == 8);  // entry offset 16
static_assert(kFrameHeaderSize + sizeof(SlotRefBody) == kSlotRefFrameSize);

// Body of a MMAP_REF entry, at entry offset 8 (§7.4). Packed to 4 bytes
// because map_offset sits at entry offset 16 but entries are only 4-aligned.
#pragma pack(push, 4)
struct MmapRefBody {
  uint32_t map_id;
  uint32_t map_generation;
  uint64_t map_offset;
  uint32_t payload_len;
  uint32_t reserved;
};
#pragma pack(pop)

static_assert(sizeof(MmapRefBody) == 24);
static_assert(offsetof(MmapRefBody, map_id) == 0);          // entry offset 8
static_assert(offsetof(MmapRefBody, map_generation) == 4);  // entry offset 12
static_assert(offsetof(MmapRefBody, map_offset) == 8);      // entry offset 16
static_assert(offsetof(MmapRefBody, payload_len) == 16);    // entry offset 24
static_assert(offsetof(MmapRefBody, reserved) == 20);       // entry offset 28
static_assert(kFrameHeaderSize + sizeof(MmapRefBody) == kMmapRefFrameSize);

// ---- Slot pool (§8.1) ------------------------------------------------------------

struct ClassHeader {
  uint32_t slot_size;
  uint32_t slot_count;
  uint64_t free_head;  // atomic; (tag << 32) | index, index kSlotEnd = empty
  uint8_t pad[48];
};

static_assert(sizeof(ClassHeader) == kClassHeaderSize);
static_assert(offsetof(ClassHeader, slot_size) == 0);
static_assert(offsetof(ClassHeader, slot_count) == 4);
static_assert(offsetof(ClassHeader, free_head) == 8);
static_assert(offsetof(ClassHeader, pad) == 16);

struct SlotMeta {
  uint32_t generation;  // atomic; +1 on every allocation
  uint32_t state;       // atomic; kSlotFree / kSlotAllocated
  uint32_t owner_peer;  // atomic; allocator's peer id, 0 = host
  uint32_t next_free;   // atomic; next slot on the free stack, kSlotEnd = end
};

static_assert(sizeof(SlotMeta) == kSlotMetaSize);
static_assert(offsetof(SlotMeta, generation) == 0);
static_assert(offsetof(SlotMeta, state) == 4);
static_assert(offsetof(SlotMeta, owner_peer) == 8);
static_assert(offsetof(SlotMeta, next_free) == 12);

// ---- Control and bootstrap messages (§9.1, §11) --------------------------------

inline constexpr uint32_t kMappingControlMessageSize = 16;
inline constexpr uint32_t kBootstrapResponseHeaderSize = 11;

template <typename T>
inline constexpr bool kIsSharedStruct =
    std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>;
static_assert(kIsSharedStruct<SegmentHeader>);
static_assert(kIsSharedStruct<PeerEntry>);
static_assert(kIsSharedStruct<RingHeader>);
static_assert(kIsSharedStruct<FrameHeader>);
static_assert(kIsSharedStruct<SlotRefBody>);
static_assert(kIsSharedStruct<MmapRefBody>);
static_assert(kIsSharedStruct<ClassHeader>);
static_assert(kIsSharedStruct<SlotMeta>);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_FORMAT_H_
