// The crash-recovery procedure (format §14, D-10, §8.8) on real host
// segments: C-R1 to C-R6 and C-R8, and the fencing of RecoverPeer. The rings
// are filled with the real writers (frame.h) through BipBuffer grants, the
// pool through VarSlotPool, exactly as a host and a guest would.
//
// C-R1 is checked from whole-segment snapshots taken by the after_step hook:
// between two steps, only the bytes that step may write are allowed to
// differ. The order *inside* step 3 (host->guest reset before guest->host)
// is not visible between steps; peer_recovery_process_test.cc checks it with
// a write trap, as it does the drain bound of C-R6, and C-R7.
#include "shm/peer_recovery.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/frame.h"
#include "shm/layout.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "shm/slot_ref.h"
#include "shm/var_slot_pool.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::shm {
namespace {

using Bytes = std::vector<uint8_t>;

// The peer being recovered, and two neighbours whose state must survive.
constexpr uint32_t kPeer = 2;
constexpr uint32_t kLeft = 1;
constexpr uint32_t kRight = 3;
constexpr uint32_t kHeartbeat = 123456789;

constexpr uint32_t kCapacity = 512;

SegmentConfig TestConfig() {
  SegmentConfig c;
  c.max_guests = 3;
  c.ring_capacity = kCapacity;
  c.classes = {{64, 8}, {256, 4}, {1024, 3}};
  c.max_payload_size = 4096;
  return c;
}

uint32_t Index(uint32_t peer_id) { return peer_id - 1; }

// ---- Reading snapshots -----------------------------------------------------------

template <typename T>
T At(const Bytes& bytes, uint64_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

struct Region {
  uint64_t offset;
  uint64_t size;
};

Region EntryRegion(const SegmentLayout& l, uint32_t peer_id) {
  return {l.EntryOffset(Index(peer_id)), sizeof(PeerEntry)};
}
Region StateAndHeartbeat(const SegmentLayout& l, uint32_t peer_id) {
  // state, epoch, heartbeat: the first 16 bytes. The epoch is checked apart.
  return {l.EntryOffset(Index(peer_id)), 16};
}
Region StateWord(const SegmentLayout& l, uint32_t peer_id) {
  return {l.EntryOffset(Index(peer_id)), sizeof(uint32_t)};
}
Region HostToGuestHeader(const SegmentLayout& l, uint32_t peer_id) {
  return {l.HostToGuestHeader(Index(peer_id)), kRingHeaderSize};
}
Region GuestToHostHeader(const SegmentLayout& l, uint32_t peer_id) {
  return {l.GuestToHostHeader(Index(peer_id)), kRingHeaderSize};
}
// Every class header and metadata array: what allocate and free write.
std::vector<Region> PoolMetadata(const SegmentLayout& l) {
  std::vector<Region> regions;
  for (const SlotClassLayout& c : l.classes) {
    regions.push_back({c.header_offset, sizeof(ClassHeader)});
    regions.push_back({c.meta_offset, uint64_t{sizeof(SlotMeta)} * c.config.slot_count});
  }
  return regions;
}

// Names the structure holding `offset`, for failure messages.
std::string Where(const SegmentLayout& l, uint64_t offset) {
  if (offset < kPeerTableOffset) return absl::StrCat("segment header +", offset);
  if (offset < l.ring_base) {
    const uint64_t rel = offset - kPeerTableOffset;
    return absl::StrCat("peer ", rel / sizeof(PeerEntry) + 1, " entry +", rel % sizeof(PeerEntry));
  }
  if (offset < l.var_pool_offset) {
    const uint64_t rel = offset - l.ring_base;
    const uint64_t in_pair = rel % l.pair_stride;
    const std::string ring = in_pair < l.ring_stride ? "guest->host" : "host->guest";
    const uint64_t in_ring = in_pair % l.ring_stride;
    return absl::StrCat("peer ", rel / l.pair_stride + 1, " ", ring,
                        in_ring < kRingHeaderSize ? " header +" : " data +",
                        in_ring < kRingHeaderSize ? in_ring : in_ring - kRingHeaderSize);
  }
  for (size_t k = 0; k < l.classes.size(); ++k) {
    const SlotClassLayout& c = l.classes[k];
    if (offset >= c.header_offset && offset < c.header_offset + sizeof(ClassHeader)) {
      return absl::StrCat("class ", k, " header +", offset - c.header_offset);
    }
    const uint64_t meta_end = c.meta_offset + uint64_t{sizeof(SlotMeta)} * c.config.slot_count;
    if (offset >= c.meta_offset && offset < meta_end) {
      return absl::StrCat("class ", k, " slot ", (offset - c.meta_offset) / sizeof(SlotMeta),
                          " meta +", (offset - c.meta_offset) % sizeof(SlotMeta));
    }
  }
  return absl::StrCat("pool byte ", offset);
}

// "Unchanged" of §18 for a whole segment, minus the regions a step may
// write: every other byte must be equal.
::testing::AssertionResult OnlyChanged(const SegmentLayout& l, const Bytes& before,
                                       const Bytes& after, const std::vector<Region>& allowed) {
  if (before.size() != after.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (uint64_t i = 0; i < before.size(); ++i) {
    if (before[i] == after[i]) continue;
    bool ok = false;
    for (const Region& r : allowed) ok = ok || (i >= r.offset && i < r.offset + r.size);
    if (!ok) {
      return ::testing::AssertionFailure()
             << "byte " << i << " (" << Where(l, i) << ") changed from " << int{before[i]} << " to "
             << int{after[i]};
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Unchanged(const SegmentLayout& l, const Bytes& before,
                                     const Bytes& after) {
  return OnlyChanged(l, before, after, {});
}

::testing::AssertionResult SameRegion(const Bytes& a, const Bytes& b, const Region& r) {
  if (std::memcmp(a.data() + r.offset, b.data() + r.offset, r.size) == 0) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "region at " << r.offset << " (" << r.size << " bytes) differs";
}

PeerEntry EntryIn(const Bytes& b, const SegmentLayout& l, uint32_t peer_id) {
  return At<PeerEntry>(b, l.EntryOffset(Index(peer_id)));
}
RingHeader HostToGuestIn(const Bytes& b, const SegmentLayout& l, uint32_t peer_id) {
  return At<RingHeader>(b, l.HostToGuestHeader(Index(peer_id)));
}
RingHeader GuestToHostIn(const Bytes& b, const SegmentLayout& l, uint32_t peer_id) {
  return At<RingHeader>(b, l.GuestToHostHeader(Index(peer_id)));
}
SlotMeta MetaIn(const Bytes& b, const SegmentLayout& l, const SlotRef& ref) {
  return At<SlotMeta>(b, l.SlotMetaOffset(ref.class_idx, ref.slot_idx));
}

// C-R3's "0/0/0 with capacity kept": the 128 bytes are zero but the capacity.
::testing::AssertionResult IsResetHeader(const RingHeader& h) {
  RingHeader expected;
  std::memset(&expected, 0, sizeof(expected));
  expected.capacity = kCapacity;
  if (std::memcmp(&h, &expected, sizeof(h)) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "ring header write " << h.write << " watermark " << h.watermark << " read " << h.read
         << " capacity " << h.capacity << " (or padding not zero)";
}

// ---- The fixture ---------------------------------------------------------------------

// What PlantFullScenario put where.
struct Scenario {
  uint32_t epoch = 0;
  std::vector<SlotRef> host_in_flight;  // host slots named by kPeer's H->G SLOT_REFs
  std::vector<SlotRef> peer_owned;      // slots kPeer allocated (some in its G->H)
  std::vector<SlotRef> untouched;       // everyone else's: must survive byte for byte
};

struct StepSnapshot {
  RecoveryStep step;
  Bytes bytes;
};

class PeerRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Segment>> created =
        Segment::Create(dir_.File("seg"), TestConfig());
    ASSERT_TRUE(created.ok()) << created.status();
    seg_ = *std::move(created);
    pool_ = seg_->pool();
    Churn();
  }

  const SegmentLayout& layout() const { return seg_->layout(); }
  Bytes Snapshot() const { return Bytes(seg_->base(), seg_->base() + seg_->layout().total_size); }
  PeerEntryView Entry(uint32_t peer_id) const { return seg_->peers().Entry(peer_id).value(); }
  BipBuffer HostToGuest(uint32_t peer_id) const { return seg_->HostToGuestRing(Index(peer_id)); }
  BipBuffer GuestToHost(uint32_t peer_id) const { return seg_->GuestToHostRing(Index(peer_id)); }
  RingHeader* HostToGuestHeaderPtr(uint32_t peer_id) const {
    return reinterpret_cast<RingHeader*>(seg_->base() + layout().HostToGuestHeader(Index(peer_id)));
  }
  PeerEntry* EntryPtr(uint32_t peer_id) const {
    return reinterpret_cast<PeerEntry*>(seg_->base() + layout().EntryOffset(Index(peer_id)));
  }

  // Takes `peer_id` the way a guest does, after `history` earlier
  // occupancies, so the epoch is not the trivial 1. Returns the epoch.
  uint32_t Occupy(uint32_t peer_id, int history = 2) {
    PeerEntryView entry = Entry(peer_id);
    for (int i = 0; i < history; ++i) {
      EXPECT_TRUE(entry.TryReserve().ok());
      entry.ReleaseReserved();
    }
    absl::StatusOr<uint32_t> epoch = entry.TryAttach();
    EXPECT_TRUE(epoch.ok()) << epoch.status();
    entry.UpdateHeartbeat(kHeartbeat);
    return epoch.value_or(0);
  }

  // Allocates from the class whose slot_size is `size`, owned by `owner`.
  SlotRef Alloc(uint32_t size, uint32_t owner) {
    absl::StatusOr<SlotRef> ref = pool_.Allocate(size, owner);
    EXPECT_TRUE(ref.ok()) << ref.status();
    return ref.value_or(SlotRef{});
  }

  // Allocates and frees every slot once, so generations are not all 1 and a
  // generation check has something to tell apart.
  void Churn() {
    for (uint32_t k = 0; k < pool_.num_classes(); ++k) {
      const SlotClassConfig& c = pool_.class_config(k);
      std::vector<SlotRef> refs;
      for (uint32_t j = 0; j < c.slot_count; ++j) refs.push_back(Alloc(c.slot_size, kHostPeerId));
      for (const SlotRef& ref : refs) EXPECT_TRUE(pool_.Free(ref).ok());
    }
  }

  // Writes one entry of `len` bytes through a real grant and commit.
  static void Put(BipBuffer& ring, uint32_t len,
                  const std::function<absl::Status(absl::Span<uint8_t>)>& write) {
    absl::StatusOr<absl::Span<uint8_t>> grant = ring.TryGrant(len);
    ASSERT_TRUE(grant.ok()) << grant.status();
    ASSERT_TRUE(write(*grant).ok());
    ASSERT_TRUE(ring.Commit(len).ok());
  }
  static void PutSlotRef(BipBuffer& ring, const SlotRef& ref) {
    Put(ring, kSlotRefFrameSize,
        [&](absl::Span<uint8_t> dst) { return WriteSlotRefFrame(dst, ref); });
  }
  static void PutMmapRef(BipBuffer& ring, uint32_t map_id) {
    const MmapRef ref{map_id, 0, 4096, 100};
    Put(ring, kMmapRefFrameSize,
        [&](absl::Span<uint8_t> dst) { return WriteMmapRefFrame(dst, ref); });
  }
  static void PutInline(BipBuffer& ring, const std::string& text) {
    const auto payload =
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    Put(ring, InlineFrameSize(static_cast<uint32_t>(text.size())),
        [&](absl::Span<uint8_t> dst) { return WriteInlineFrame(dst, payload); });
  }
  // Raw bytes, for entries no writer would produce.
  static void PutRaw(BipBuffer& ring, const Bytes& bytes) {
    Put(ring, static_cast<uint32_t>(bytes.size()), [&](absl::Span<uint8_t> dst) {
      std::memcpy(dst.data(), bytes.data(), bytes.size());
      return absl::OkStatus();
    });
  }
  // The guest's side of a ring: consumes every entry in it.
  static void ConsumeAll(BipBuffer& ring) {
    for (int i = 0; i < 1000; ++i) {
      absl::StatusOr<absl::Span<const uint8_t>> readable = ring.TryRead();
      ASSERT_TRUE(readable.ok()) << readable.status();
      if (readable->empty()) return;
      absl::StatusOr<Frame> frame = ParseFrame(*readable);
      ASSERT_TRUE(frame.ok()) << frame.status();
      ASSERT_TRUE(ring.Release(frame->total_len).ok());
    }
    FAIL() << "ring never emptied";
  }
  // Moves the ring's indexes near its end, so the entries written next wrap.
  static void AdvanceNearEnd(BipBuffer& ring) {
    for (int i = 0; i < 7; ++i) PutInline(ring, std::string(56, 'f'));  // 7 x 64 bytes
    ConsumeAll(ring);
  }

  uint32_t FreeCount(uint32_t class_idx) const {
    absl::StatusOr<uint32_t> n = pool_.FreeCount(class_idx);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.value_or(0);
  }
  SlotMetaSnapshot Meta(const SlotRef& ref) const {
    return pool_.Meta(ref.class_idx, ref.slot_idx).value();
  }
  bool IsFree(const SlotRef& ref) const {
    const SlotMetaSnapshot m = Meta(ref);
    return m.state == kSlotFree && m.owner_peer == kHostPeerId;
  }

  // Runs RecoverPeer with hooks that snapshot the segment after every step.
  absl::StatusOr<RecoveryReport> RecoverWithSnapshots(uint32_t peer_id, uint32_t epoch,
                                                      std::vector<StepSnapshot>& steps,
                                                      uint32_t leases = 0) {
    RecoveryHooks hooks;
    hooks.after_step = [&](RecoveryStep step) { steps.push_back({step, Snapshot()}); };
    hooks.drop_mapping_leases = [&, leases](uint32_t id) -> uint32_t {
      EXPECT_EQ(id, peer_id);
      return leases;
    };
    return RecoverPeer(*seg_, {peer_id, epoch}, hooks);
  }

  // Three attached guests with slots and traffic in both directions; kPeer
  // is the one to recover. Its H->G ring wraps, so the drain reads a tail
  // and then a front.
  Scenario PlantFullScenario() {
    Scenario s;
    Occupy(kLeft, 0);
    s.epoch = Occupy(kPeer);
    Occupy(kRight, 5);

    // Neighbours: slots of their own, one host slot in flight to kLeft, and
    // one host slot the host keeps.
    const SlotRef left_a = Alloc(64, kLeft);
    const SlotRef left_b = Alloc(1024, kLeft);
    const SlotRef right_a = Alloc(256, kRight);
    const SlotRef host_kept = Alloc(64, kHostPeerId);
    const SlotRef host_to_left = Alloc(256, kHostPeerId);
    s.untouched = {left_a, left_b, right_a, host_kept, host_to_left};
    BipBuffer left_h2g = HostToGuest(kLeft);
    PutSlotRef(left_h2g, host_to_left);
    BipBuffer left_g2h = GuestToHost(kLeft);
    PutSlotRef(left_g2h, left_a);

    // kPeer's own slots: two in flight to the host on G->H, two just held.
    s.peer_owned = {Alloc(64, kPeer), Alloc(64, kPeer), Alloc(256, kPeer), Alloc(1024, kPeer)};
    BipBuffer g2h = GuestToHost(kPeer);
    PutSlotRef(g2h, s.peer_owned[0]);
    PutInline(g2h, "to the host");
    PutSlotRef(g2h, s.peer_owned[2]);

    // Host slots in flight to kPeer, mixed with the other kinds, wrapping.
    s.host_in_flight = {Alloc(64, kHostPeerId), Alloc(256, kHostPeerId), Alloc(1024, kHostPeerId)};
    BipBuffer h2g = HostToGuest(kPeer);
    AdvanceNearEnd(h2g);
    PutSlotRef(h2g, s.host_in_flight[0]);  // [448, 468)
    PutInline(h2g, "hello");               // [468, 484)
    PutMmapRef(h2g, 5);                    // does not fit: wraps, [0, 32)
    PutSlotRef(h2g, s.host_in_flight[1]);
    PutInline(h2g, "");
    PutSlotRef(h2g, s.host_in_flight[2]);
    EXPECT_NE(HostToGuestHeaderPtr(kPeer)->watermark, 0u) << "the scenario must wrap";
    return s;
  }

  shmhub::testing::TempDir dir_;
  std::unique_ptr<Segment> seg_;
  // Replaced by the segment's pool in SetUp.
  VarSlotPool pool_{nullptr, SegmentLayout{}};
};

// ---- C-R1 --------------------------------------------------------------------------

TEST_F(PeerRecoveryTest, C_R1_EachStepRunsInOrderAndWritesOnlyWhatItOwns) {
  const Scenario s = PlantFullScenario();
  const SegmentLayout& l = layout();
  const Bytes before = Snapshot();
  std::vector<StepSnapshot> steps;
  std::optional<Bytes> at_leases;
  RecoveryHooks hooks;
  hooks.after_step = [&](RecoveryStep step) { steps.push_back({step, Snapshot()}); };
  hooks.drop_mapping_leases = [&](uint32_t) -> uint32_t {
    at_leases = Snapshot();
    return 0;
  };
  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, s.epoch}, hooks);
  ASSERT_TRUE(report.ok()) << report.status();

  ASSERT_EQ(steps.size(), 6u);
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].step, static_cast<RecoveryStep>(i + 1)) << "hook call " << i;
  }
  const Bytes& goodbye = steps[0].bytes;
  const Bytes& drained = steps[1].bytes;
  const Bytes& reset = steps[2].bytes;
  const Bytes& reclaimed = steps[3].bytes;
  const Bytes& leases = steps[4].bytes;
  const Bytes& empty = steps[5].bytes;

  // 1. Goodbye before any ring word changes: the state word is the only
  //    byte of the segment that moved.
  EXPECT_TRUE(OnlyChanged(l, before, goodbye, {StateWord(l, kPeer)}));
  EXPECT_EQ(EntryIn(goodbye, l, kPeer).state, static_cast<uint32_t>(PeerState::kGoodbye));

  // 2. H->G drained (read caught up with write, wrap undone) but not reset;
  //    G->H untouched; only the H->G header and pool metadata moved.
  std::vector<Region> drain_may_write = PoolMetadata(l);
  drain_may_write.push_back(HostToGuestHeader(l, kPeer));
  EXPECT_TRUE(OnlyChanged(l, goodbye, drained, drain_may_write));
  const RingHeader h2g = HostToGuestIn(drained, l, kPeer);
  EXPECT_EQ(h2g.watermark, 0u);
  EXPECT_EQ(h2g.read, h2g.write);
  EXPECT_NE(h2g.write, 0u) << "drained must differ from reset in this scenario";
  for (const SlotRef& ref : s.host_in_flight) {
    EXPECT_EQ(MetaIn(drained, l, ref).state, kSlotFree) << "host slot " << ref.slot_idx;
  }
  for (const SlotRef& ref : s.peer_owned) {
    EXPECT_EQ(MetaIn(drained, l, ref).state, kSlotAllocated) << "reclaimed during the drain";
  }

  // 3. Both rings reset, and nothing else: in particular no slot went back
  //    to a free stack (the pool metadata is byte-identical).
  EXPECT_TRUE(
      OnlyChanged(l, drained, reset, {HostToGuestHeader(l, kPeer), GuestToHostHeader(l, kPeer)}));
  EXPECT_TRUE(IsResetHeader(HostToGuestIn(reset, l, kPeer)));
  EXPECT_TRUE(IsResetHeader(GuestToHostIn(reset, l, kPeer)));

  // 4. Only now the peer's slots return, and only pool metadata moves.
  EXPECT_TRUE(OnlyChanged(l, reset, reclaimed, PoolMetadata(l)));
  for (const SlotRef& ref : s.peer_owned) {
    EXPECT_EQ(MetaIn(reclaimed, l, ref).state, kSlotFree) << "peer slot " << ref.slot_idx;
  }

  // 5. The lease hook runs while the entry is still Goodbye; the segment
  //    keeps no leases, so nothing changes.
  ASSERT_TRUE(at_leases.has_value());
  EXPECT_TRUE(Unchanged(l, reclaimed, *at_leases));
  EXPECT_TRUE(Unchanged(l, reclaimed, leases));

  // 6. Empty last: the entry was Goodbye until this step, which writes only
  //    the entry, and nothing is written after it.
  EXPECT_EQ(EntryIn(leases, l, kPeer).state, static_cast<uint32_t>(PeerState::kGoodbye));
  EXPECT_TRUE(OnlyChanged(l, leases, empty, {StateAndHeartbeat(l, kPeer)}));
  EXPECT_EQ(EntryIn(empty, l, kPeer).state, static_cast<uint32_t>(PeerState::kEmpty));
  EXPECT_TRUE(Unchanged(l, empty, Snapshot()));
}

// ---- C-R2 --------------------------------------------------------------------------

TEST_F(PeerRecoveryTest, C_R2_SlotRefEntriesInHostToGuestFreeTheirHostSlots) {
  const uint32_t epoch = Occupy(kPeer);
  const std::vector<SlotRef> in_flight = {Alloc(64, kHostPeerId), Alloc(64, kHostPeerId),
                                          Alloc(256, kHostPeerId), Alloc(1024, kHostPeerId)};
  BipBuffer h2g = HostToGuest(kPeer);
  for (const SlotRef& ref : in_flight) PutSlotRef(h2g, ref);
  const std::vector<uint32_t> free_before = {FreeCount(0), FreeCount(1), FreeCount(2)};
  const Bytes before = Snapshot();

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_EQ(report->entries_scanned, 4u);
  EXPECT_EQ(report->slots_freed_from_ring, 4u);
  EXPECT_EQ(report->slots_reclaimed_by_owner, 0u);
  EXPECT_EQ(FreeCount(0), free_before[0] + 2);
  EXPECT_EQ(FreeCount(1), free_before[1] + 1);
  EXPECT_EQ(FreeCount(2), free_before[2] + 1);
  for (const SlotRef& ref : in_flight) {
    const SlotMetaSnapshot m = Meta(ref);
    EXPECT_EQ(m.state, kSlotFree);
    EXPECT_EQ(m.owner_peer, kHostPeerId);
    EXPECT_EQ(m.generation, ref.generation) << "a free never changes the generation";
    EXPECT_EQ(m.generation, MetaIn(before, layout(), ref).generation);
  }
}

TEST_F(PeerRecoveryTest, C_R2_MmapRefAndInlineEntriesAreConsumedAndFreeNothing) {
  const uint32_t epoch = Occupy(kPeer);
  // A host slot the host still holds: nothing in the ring may free it.
  const SlotRef held = Alloc(64, kHostPeerId);
  BipBuffer h2g = HostToGuest(kPeer);
  PutMmapRef(h2g, 1);
  PutInline(h2g, "inline payload");
  PutMmapRef(h2g, 2);
  PutInline(h2g, "");
  const Bytes before = Snapshot();
  std::vector<StepSnapshot> steps;

  absl::StatusOr<RecoveryReport> report = RecoverWithSnapshots(kPeer, epoch, steps);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(steps.size(), 6u);

  EXPECT_EQ(report->entries_scanned, 4u);
  EXPECT_EQ(report->mmap_refs_seen, 2u);
  EXPECT_EQ(report->inline_entries_seen, 2u);
  EXPECT_EQ(report->slots_freed_from_ring, 0u);
  EXPECT_EQ(report->ProblemCount(), 0u);
  // Consumed: after the drain the H->G ring is empty (read == write != 0).
  const RingHeader drained = HostToGuestIn(steps[1].bytes, layout(), kPeer);
  EXPECT_EQ(drained.read, drained.write);
  EXPECT_EQ(drained.write, 2 * kMmapRefFrameSize + InlineFrameSize(14) + InlineFrameSize(0));
  // Freed nothing: the pool is byte-identical, the held slot still Allocated.
  for (const Region& r : PoolMetadata(layout())) EXPECT_TRUE(SameRegion(before, Snapshot(), r));
  EXPECT_EQ(Meta(held).state, kSlotAllocated);
}

// ---- C-R3 --------------------------------------------------------------------------

TEST_F(PeerRecoveryTest, C_R3_BothRingHeadersAreZeroWithCapacityKept) {
  const Scenario s = PlantFullScenario();
  // Both rings hold something and H->G is wrapped: three non-zero words.
  const RingHeader h2g_before = *HostToGuestHeaderPtr(kPeer);
  ASSERT_NE(h2g_before.write, 0u);
  ASSERT_NE(h2g_before.watermark, 0u);
  ASSERT_NE(h2g_before.read, 0u);
  ASSERT_NE(GuestToHost(kPeer).Occupancy(), 0u);

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, s.epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  const Bytes after = Snapshot();
  EXPECT_TRUE(IsResetHeader(HostToGuestIn(after, layout(), kPeer)));
  EXPECT_TRUE(IsResetHeader(GuestToHostIn(after, layout(), kPeer)));
  EXPECT_TRUE(HostToGuest(kPeer).CheckHeader().ok());
  EXPECT_TRUE(GuestToHost(kPeer).CheckHeader().ok());
}

// ---- C-R4 --------------------------------------------------------------------------

TEST_F(PeerRecoveryTest, C_R4_PeerSlotsAreFreedAndEveryOtherSlotIsUntouched) {
  const Scenario s = PlantFullScenario();
  const Bytes before = Snapshot();

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, s.epoch});
  ASSERT_TRUE(report.ok()) << report.status();
  const Bytes after = Snapshot();

  EXPECT_EQ(report->slots_reclaimed_by_owner, s.peer_owned.size());
  for (const SlotRef& ref : s.peer_owned) {
    SCOPED_TRACE(absl::StrCat("peer slot class ", ref.class_idx, " slot ", ref.slot_idx));
    EXPECT_TRUE(IsFree(ref));
    EXPECT_EQ(Meta(ref).generation, ref.generation);
  }
  // The host slots named by H->G are C-R2's; every other allocated slot
  // keeps its metadata byte for byte (generation, state, owner, next).
  for (const SlotRef& ref : s.host_in_flight) EXPECT_TRUE(IsFree(ref));
  for (const SlotRef& ref : s.untouched) {
    SCOPED_TRACE(absl::StrCat("class ", ref.class_idx, " slot ", ref.slot_idx));
    EXPECT_TRUE(SameRegion(
        before, after, {layout().SlotMetaOffset(ref.class_idx, ref.slot_idx), sizeof(SlotMeta)}));
    EXPECT_EQ(Meta(ref).state, kSlotAllocated);
  }
  // Nothing is Allocated but the untouched slots, and the stacks hold the rest.
  uint32_t allocated = 0;
  for (uint32_t k = 0; k < pool_.num_classes(); ++k) {
    for (uint32_t j = 0; j < pool_.class_config(k).slot_count; ++j) {
      if (pool_.Meta(k, j)->state == kSlotAllocated) ++allocated;
    }
  }
  EXPECT_EQ(allocated, s.untouched.size());
  EXPECT_EQ(FreeCount(0), 8u - 2);  // kLeft's and the host's kept slot
  EXPECT_EQ(FreeCount(1), 4u - 2);  // kRight's and the host's in flight to kLeft
  EXPECT_EQ(FreeCount(2), 3u - 1);  // kLeft's
  // The neighbours' entries and rings are byte-identical.
  for (uint32_t id : {kLeft, kRight}) {
    SCOPED_TRACE(absl::StrCat("peer ", id));
    EXPECT_TRUE(SameRegion(before, after, EntryRegion(layout(), id)));
    EXPECT_TRUE(SameRegion(before, after, {layout().RingOffset(Index(id)), layout().pair_stride}));
  }
}

// ---- C-R5 --------------------------------------------------------------------------

TEST_F(PeerRecoveryTest, C_R5_EntryEndsEmptyWithZeroHeartbeatAndTheSameEpoch) {
  // Crashed (still Attached) and left gracefully (Goodbye) end the same way.
  for (bool said_goodbye : {false, true}) {
    SCOPED_TRACE(said_goodbye ? "Goodbye" : "Attached");
    const uint32_t epoch = Occupy(kPeer, said_goodbye ? 4 : 1);
    if (said_goodbye) Entry(kPeer).SetGoodbye();
    ASSERT_EQ(Entry(kPeer).LastHeartbeat(), kHeartbeat);
    PeerEntry expected = *EntryPtr(kPeer);
    expected.state = static_cast<uint32_t>(PeerState::kEmpty);
    expected.last_heartbeat = 0;

    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(Entry(kPeer).State().Is(PeerState::kEmpty));
    EXPECT_EQ(Entry(kPeer).LastHeartbeat(), 0u);
    EXPECT_EQ(Entry(kPeer).Epoch(), epoch);
    // ring_offset and the reserved bytes too: the whole entry as expected.
    EXPECT_EQ(std::memcmp(EntryPtr(kPeer), &expected, sizeof(PeerEntry)), 0);
    // Reusable: the next occupancy takes the next epoch.
    if (!said_goodbye) {
      EXPECT_EQ(Entry(kPeer).TryAttach().value(), epoch + 1);
      Entry(kPeer).SetGoodbye();
      ASSERT_TRUE(RecoverPeer(*seg_, {kPeer, epoch + 1}).ok());
    }
  }
}

// ---- C-R6 --------------------------------------------------------------------------

TEST_F(PeerRecoveryTest, C_R6_SlotRefToAnotherGuestsSlotIsLeftAlone) {
  const uint32_t epoch = Occupy(kPeer);
  Occupy(kLeft);
  const SlotRef left = Alloc(256, kLeft);
  const SlotRef own = Alloc(64, kPeer);  // its own slot: step 4's, not step 2's
  BipBuffer h2g = HostToGuest(kPeer);
  PutSlotRef(h2g, left);  // exact generation: only the owner check stops it
  PutSlotRef(h2g, own);
  const Bytes before = Snapshot();

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_EQ(report->entries_scanned, 2u);
  EXPECT_EQ(report->foreign_slot_refs, 2u);
  EXPECT_EQ(report->slots_freed_from_ring, 0u);
  EXPECT_EQ(report->slots_reclaimed_by_owner, 1u);
  EXPECT_TRUE(
      SameRegion(before, Snapshot(),
                 {layout().SlotMetaOffset(left.class_idx, left.slot_idx), sizeof(SlotMeta)}));
  EXPECT_TRUE(IsFree(own));
  EXPECT_TRUE(Entry(kPeer).State().Is(PeerState::kEmpty));
}

TEST_F(PeerRecoveryTest, C_R6_SlotRefsOutOfRangeAreCountedAndTouchNothing) {
  const uint32_t epoch = Occupy(kPeer);
  const SlotRef host = Alloc(64, kHostPeerId);
  BipBuffer h2g = HostToGuest(kPeer);
  PutSlotRef(h2g, SlotRef{3, 0, 0, 1});           // class == num_classes
  PutSlotRef(h2g, SlotRef{255, 0, 0, 1});         // class far out
  PutSlotRef(h2g, SlotRef{2, 0, 3, 1});           // slot == slot_count
  PutSlotRef(h2g, SlotRef{0, 0, 0xFFFFFFFF, 1});  // slot far out
  PutSlotRef(h2g, SlotRef{host.class_idx, 1, host.slot_idx, host.generation});  // extent 1
  const Bytes before = Snapshot();

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_EQ(report->entries_scanned, 5u);
  EXPECT_EQ(report->bad_slot_refs, 5u);
  EXPECT_EQ(report->slots_freed_from_ring, 0u);
  for (const Region& r : PoolMetadata(layout())) EXPECT_TRUE(SameRegion(before, Snapshot(), r));
  EXPECT_EQ(Meta(host).state, kSlotAllocated) << "extent 1 must not free extent 0's slot";
  EXPECT_TRUE(IsResetHeader(*HostToGuestHeaderPtr(kPeer)));
  EXPECT_TRUE(Entry(kPeer).State().Is(PeerState::kEmpty));
}

TEST_F(PeerRecoveryTest, C_R6_WrongGenerationFreesNothing) {
  const uint32_t epoch = Occupy(kPeer);
  const SlotRef host = Alloc(64, kHostPeerId);
  ASSERT_GT(host.generation, 1u);
  SlotRef older = host;
  --older.generation;
  SlotRef newer = host;
  ++newer.generation;
  // A host slot that is Free: owner 0, but nothing to free.
  const SlotRef freed = Alloc(256, kHostPeerId);
  ASSERT_TRUE(pool_.Free(freed).ok());
  BipBuffer h2g = HostToGuest(kPeer);
  PutSlotRef(h2g, older);
  PutSlotRef(h2g, newer);
  PutSlotRef(h2g, freed);
  const Bytes before = Snapshot();

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_EQ(report->entries_scanned, 3u);
  EXPECT_EQ(report->stale_slot_refs, 3u);
  EXPECT_EQ(report->slots_freed_from_ring, 0u);
  for (const Region& r : PoolMetadata(layout())) EXPECT_TRUE(SameRegion(before, Snapshot(), r));
  EXPECT_EQ(Meta(host).state, kSlotAllocated);
}

// A garbage entry between two good SLOT_REFs: the first is freed, the drain
// stops at the garbage (§14 step 2; we never skip bytes), the second leaks
// like any host slot left in a reset ring, and steps 3 to 6 still run.
TEST_F(PeerRecoveryTest, C_R6_GarbageEntryInTheMiddleStopsTheDrainOnly) {
  struct Garbage {
    const char* name;
    Bytes bytes;
  };
  const std::vector<Garbage> kinds = {
      {"total_len 0", {0, 0, 0, 0, 0, 0, 0, 0}},
      {"total_len 6", {6, 0, 0, 0, 0, 0, 0, 0}},
      {"total_len 10", {10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"total_len past the readable span", {0, 1, 0, 0, 0, 0, 0, 0}},
      {"both flags", {20, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"short SLOT_REF", {16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"short MMAP_REF", {24, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"inline_len past total_len", {12, 0, 0, 0, 0, 0, 9, 0, 'a', 'b', 'c', 'd'}},
  };
  for (const Garbage& g : kinds) {
    SCOPED_TRACE(g.name);
    const uint32_t epoch = Occupy(kPeer, 0);
    const SlotRef first = Alloc(64, kHostPeerId);
    const SlotRef after_garbage = Alloc(256, kHostPeerId);
    const SlotRef own = Alloc(1024, kPeer);
    BipBuffer h2g = HostToGuest(kPeer);
    PutSlotRef(h2g, first);
    PutRaw(h2g, g.bytes);
    PutSlotRef(h2g, after_garbage);

    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
    ASSERT_TRUE(report.ok()) << report.status();

    EXPECT_EQ(report->entries_scanned, 1u);
    EXPECT_EQ(report->slots_freed_from_ring, 1u);
    EXPECT_EQ(report->invalid_entries, 1u);
    EXPECT_EQ(report->ProblemCount(), 1u);
    EXPECT_TRUE(IsFree(first));
    EXPECT_EQ(Meta(after_garbage).state, kSlotAllocated) << "nothing after the garbage is read";
    // Steps 3 to 6.
    EXPECT_TRUE(IsResetHeader(*HostToGuestHeaderPtr(kPeer)));
    EXPECT_EQ(report->slots_reclaimed_by_owner, 1u);
    EXPECT_TRUE(IsFree(own));
    EXPECT_TRUE(Entry(kPeer).State().Is(PeerState::kEmpty));
    ASSERT_TRUE(pool_.Free(after_garbage).ok());  // the host's cleanup, for the next round
  }
}

// A header no legal ring state explains: the drain is skipped (so the host
// slot it names leaks, §14 D-10), steps 3 to 6 still run.
TEST_F(PeerRecoveryTest, C_R6_CorruptHostToGuestHeaderSkipsTheDrainOnly) {
  struct Corruption {
    const char* name;
    uint32_t write, watermark, read, capacity;
  };
  const Corruption kinds[] = {
      {"not wrapped, read > write", 20, 0, 40, kCapacity},
      {"write beyond capacity", kCapacity + 4, 0, 0, kCapacity},
      {"read beyond capacity", 20, 0, 0xFFFFFFF0, kCapacity},
      {"watermark beyond capacity", 0, kCapacity + 64, 20, kCapacity},
      {"wrapped, read > watermark", 0, 100, 120, kCapacity},
      {"wrapped, read <= write != watermark", 60, 100, 40, kCapacity},
      {"capacity field", 20, 0, 0, kCapacity * 2},
  };
  for (const Corruption& c : kinds) {
    SCOPED_TRACE(c.name);
    const uint32_t epoch = Occupy(kPeer, 0);
    const SlotRef host = Alloc(64, kHostPeerId);
    const SlotRef own = Alloc(256, kPeer);
    BipBuffer h2g = HostToGuest(kPeer);
    PutSlotRef(h2g, host);
    RingHeader* header = HostToGuestHeaderPtr(kPeer);
    header->write = c.write;
    header->watermark = c.watermark;
    header->read = c.read;
    header->capacity = c.capacity;

    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
    ASSERT_TRUE(report.ok()) << report.status();

    EXPECT_TRUE(report->host_to_guest_corrupt);
    EXPECT_EQ(report->entries_scanned, 0u);
    EXPECT_EQ(report->ProblemCount(), 1u);
    EXPECT_EQ(Meta(host).state, kSlotAllocated);
    EXPECT_TRUE(IsResetHeader(*header));
    EXPECT_TRUE(IsResetHeader(
        *reinterpret_cast<RingHeader*>(seg_->base() + layout().GuestToHostHeader(Index(kPeer)))));
    EXPECT_EQ(report->slots_reclaimed_by_owner, 1u);
    EXPECT_TRUE(IsFree(own));
    EXPECT_TRUE(Entry(kPeer).State().Is(PeerState::kEmpty));
    ASSERT_TRUE(pool_.Free(host).ok());
  }
}

// The bound is capacity/8 entries (D-10): a full ring of the smallest
// entries holds exactly that many, and draining it must not trip the bound.
TEST_F(PeerRecoveryTest, C_R6_FullRingOfSmallestEntriesDrainsWithoutReachingTheBound) {
  const uint32_t epoch = Occupy(kPeer);
  BipBuffer h2g = HostToGuest(kPeer);
  for (uint32_t i = 0; i < kCapacity / kFrameHeaderSize; ++i) PutInline(h2g, "");
  ASSERT_EQ(h2g.Occupancy(), kCapacity);

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_FALSE(report->drain_bound_reached);
  EXPECT_EQ(report->entries_scanned, kCapacity / kFrameHeaderSize);
  EXPECT_EQ(report->inline_entries_seen, kCapacity / kFrameHeaderSize);
  EXPECT_EQ(report->ProblemCount(), 0u);
}

// A header in the producer's in-between state (watermark published, write
// not yet 0) with the tail consumed passes the snapshot check, but never
// settles: the D-2 guard gives up and the drain stops with a count.
TEST_F(PeerRecoveryTest, C_R6_HostToGuestThatNeverSettlesStopsTheDrain) {
  const uint32_t epoch = Occupy(kPeer, 0);
  RingHeader* header = HostToGuestHeaderPtr(kPeer);
  header->write = 100;
  header->watermark = 100;
  header->read = 100;
  ASSERT_TRUE(HostToGuest(kPeer).CheckHeader().ok());

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_FALSE(report->host_to_guest_corrupt);
  EXPECT_EQ(report->entries_scanned, 0u);
  EXPECT_EQ(report->invalid_entries, 1u);
  EXPECT_TRUE(IsResetHeader(*header));
  EXPECT_TRUE(Entry(kPeer).State().Is(PeerState::kEmpty));
}

// Not a C-R item: the plain words attach validation checks for every entry
// (ring capacities, ring_offset) are written back, so a guest that
// scribbled them before dying does not lock every later guest out.
TEST_F(PeerRecoveryTest, ScribbledRingCapacityAndRingOffsetAreRestored) {
  const uint32_t epoch = Occupy(kPeer);
  const Bytes pristine = Snapshot();
  HostToGuestHeaderPtr(kPeer)->capacity = 7;
  reinterpret_cast<RingHeader*>(seg_->base() + layout().GuestToHostHeader(Index(kPeer)))->capacity =
      0xFFFFFFFF;
  EntryPtr(kPeer)->ring_offset = 64;
  EXPECT_FALSE(Segment::Attach(seg_->path()).ok()) << "attach should refuse the scribbles";

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_TRUE(report->host_to_guest_corrupt);
  EXPECT_EQ(report->problems.size(), 4u) << "corrupt header, two capacities, ring_offset";
  // Back to the creator's bytes: only state and heartbeat differ.
  EXPECT_TRUE(OnlyChanged(layout(), pristine, Snapshot(), {StateAndHeartbeat(layout(), kPeer)}));
  absl::StatusOr<std::unique_ptr<Segment>> guest = Segment::Attach(seg_->path());
  EXPECT_TRUE(guest.ok()) << guest.status();
}

// ---- C-R8 --------------------------------------------------------------------------

TEST_F(PeerRecoveryTest, C_R8_ReportCountsMatchWhatWasPlanted) {
  const uint32_t epoch = Occupy(kPeer);
  Occupy(kLeft);
  const SlotRef left = Alloc(64, kLeft);
  const std::vector<SlotRef> good = {Alloc(64, kHostPeerId), Alloc(256, kHostPeerId),
                                     Alloc(1024, kHostPeerId)};
  const std::vector<SlotRef> own = {Alloc(64, kPeer), Alloc(64, kPeer), Alloc(256, kPeer),
                                    Alloc(1024, kPeer), Alloc(1024, kPeer)};
  SlotRef stale = Alloc(64, kHostPeerId);
  ++stale.generation;
  BipBuffer h2g = HostToGuest(kPeer);
  AdvanceNearEnd(h2g);
  PutSlotRef(h2g, good[0]);               // freed
  PutMmapRef(h2g, 1);                     // mmap
  PutSlotRef(h2g, left);                  // foreign; the ring wraps here
  PutInline(h2g, "x");                    // inline
  PutSlotRef(h2g, SlotRef{9, 0, 0, 1});   // bad: class
  PutSlotRef(h2g, good[1]);               // freed
  PutSlotRef(h2g, good[1]);               // stale: freed just before
  PutSlotRef(h2g, stale);                 // stale: generation
  PutMmapRef(h2g, 2);                     // mmap
  PutSlotRef(h2g, SlotRef{0, 2, 0, 1});   // bad: extent
  PutInline(h2g, "yz");                   // inline
  PutSlotRef(h2g, good[2]);               // freed
  PutRaw(h2g, {6, 0, 0, 0, 0, 0, 0, 0});  // invalid: ends the drain
  PutSlotRef(h2g, good[0]);               // never read
  ASSERT_NE(HostToGuestHeaderPtr(kPeer)->watermark, 0u);

  std::vector<StepSnapshot> steps;
  absl::StatusOr<RecoveryReport> report = RecoverWithSnapshots(kPeer, epoch, steps, 7);
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_EQ(report->peer_id, kPeer);
  EXPECT_EQ(report->epoch, epoch);
  EXPECT_EQ(report->entries_scanned, 12u);
  EXPECT_EQ(report->slots_freed_from_ring, 3u);
  EXPECT_EQ(report->mmap_refs_seen, 2u);
  EXPECT_EQ(report->inline_entries_seen, 2u);
  EXPECT_FALSE(report->host_to_guest_corrupt);
  EXPECT_EQ(report->invalid_entries, 1u);
  EXPECT_EQ(report->bad_slot_refs, 2u);
  EXPECT_EQ(report->foreign_slot_refs, 1u);
  EXPECT_EQ(report->stale_slot_refs, 2u);
  EXPECT_FALSE(report->drain_bound_reached);
  EXPECT_EQ(report->slots_reclaimed_by_owner, 5u);
  EXPECT_EQ(report->mapping_leases_dropped, 7u);
  EXPECT_EQ(report->ProblemCount(), 6u);
  EXPECT_EQ(report->problems.size(), 6u) << "one line per problem";
}

// A guest that floods H->G with bad references gets every one counted, but
// the daemon's log gets a bounded number of lines.
TEST_F(PeerRecoveryTest, C_R8_CountsStayExactWhenProblemLinesAreCapped) {
  const uint32_t epoch = Occupy(kPeer);
  BipBuffer h2g = HostToGuest(kPeer);
  constexpr uint32_t kFlood = 20;
  for (uint32_t i = 0; i < kFlood; ++i) PutSlotRef(h2g, SlotRef{200, 0, i, 1});

  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();

  EXPECT_EQ(report->entries_scanned, kFlood);
  EXPECT_EQ(report->bad_slot_refs, kFlood);
  EXPECT_EQ(report->ProblemCount(), kFlood);
  EXPECT_EQ(report->problems.size(), 16u);
}

// ---- Fencing -------------------------------------------------------------------------

// Plants traffic so that "changes nothing" has something to change.
class PeerRecoveryFencingTest : public PeerRecoveryTest {
 protected:
  void PlantTraffic() {
    BipBuffer h2g = HostToGuest(kPeer);
    PutSlotRef(h2g, Alloc(64, kHostPeerId));
    BipBuffer g2h = GuestToHost(kPeer);
    PutSlotRef(g2h, Alloc(256, kPeer));
  }
};

TEST_F(PeerRecoveryFencingTest, EmptyOrReservedEntryIsRefusedAndNothingChanges) {
  // Empty after two occupancies (epoch 2), then Reserved (epoch 3).
  for (bool reserved : {false, true}) {
    SCOPED_TRACE(reserved ? "Reserved" : "Empty");
    PeerEntryView entry = Entry(kPeer);
    if (reserved) {
      ASSERT_TRUE(entry.TryReserve().ok());
    } else {
      Occupy(kPeer, 1);
      entry.Reset();
    }
    PlantTraffic();
    const uint32_t epoch = entry.Epoch();
    const Bytes before = Snapshot();
    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
    EXPECT_EQ(ShmErrcOf(report.status()), ShmErrc::kWrongState) << report.status();
    EXPECT_TRUE(Unchanged(layout(), before, Snapshot()));
  }
}

TEST_F(PeerRecoveryFencingTest, WrongEpochIsRefusedAndNothingChanges) {
  const uint32_t epoch = Occupy(kPeer);
  PlantTraffic();
  for (bool goodbye : {false, true}) {
    SCOPED_TRACE(goodbye ? "Goodbye" : "Attached");
    if (goodbye) Entry(kPeer).SetGoodbye();
    const Bytes before = Snapshot();
    for (uint32_t other : {epoch - 1, epoch + 1}) {
      absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, other});
      EXPECT_EQ(ShmErrcOf(report.status()), ShmErrc::kStaleEpoch) << report.status();
      EXPECT_TRUE(Unchanged(layout(), before, Snapshot()));
    }
  }
}

TEST_F(PeerRecoveryFencingTest, InvalidStateWordWithTheRightEpochIsRecovered) {
  const uint32_t epoch = Occupy(kPeer);
  PlantTraffic();
  EntryPtr(kPeer)->state = 7;
  absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->slots_freed_from_ring, 1u);
  EXPECT_EQ(report->slots_reclaimed_by_owner, 1u);
  EXPECT_EQ(Entry(kPeer).LoadPair(), PeerPair(StateReading::FromRaw(0), epoch));
}

TEST_F(PeerRecoveryFencingTest, RecoveringTwiceFailsTheSecondTimeAndChangesNothing) {
  const uint32_t epoch = Occupy(kPeer);
  PlantTraffic();
  ASSERT_TRUE(RecoverPeer(*seg_, {kPeer, epoch}).ok());
  // Traffic of the neighbours and a reused slot, so a second run could harm.
  PlantTraffic();
  const Bytes before = Snapshot();
  absl::StatusOr<RecoveryReport> again = RecoverPeer(*seg_, {kPeer, epoch});
  EXPECT_EQ(ShmErrcOf(again.status()), ShmErrc::kWrongState) << again.status();
  EXPECT_TRUE(Unchanged(layout(), before, Snapshot()));
}

TEST_F(PeerRecoveryFencingTest, GuestSegmentIsRefused) {
  const uint32_t epoch = Occupy(kPeer);
  PlantTraffic();
  absl::StatusOr<std::unique_ptr<Segment>> guest = Segment::Attach(seg_->path());
  ASSERT_TRUE(guest.ok()) << guest.status();
  const Bytes before = Snapshot();
  absl::StatusOr<RecoveryReport> report = RecoverPeer(**guest, {kPeer, epoch});
  EXPECT_EQ(ShmErrcOf(report.status()), ShmErrc::kWrongState) << report.status();
  EXPECT_TRUE(Unchanged(layout(), before, Snapshot()));
}

TEST_F(PeerRecoveryFencingTest, PeerIdOutsideTheTableIsRefused) {
  const Bytes before = Snapshot();
  for (uint32_t id : {0u, 4u, 255u, 256u}) {
    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {id, 0});
    EXPECT_EQ(ShmErrcOf(report.status()), ShmErrc::kInvalidPeerId) << id;
  }
  EXPECT_TRUE(Unchanged(layout(), before, Snapshot()));
}

// The pair is re-checked before every step: an entry that changes under the
// recovery (a broken guest writing it) stops the procedure before the next
// step touches anything.
TEST_F(PeerRecoveryFencingTest, EntryChangedBetweenStepsStopsBeforeTheNextStep) {
  struct Case {
    RecoveryStep after;
    uint32_t state;
    uint32_t epoch_delta;
    ShmErrc errc;
  };
  const Case cases[] = {
      {RecoveryStep::kGoodbye, static_cast<uint32_t>(PeerState::kAttached), 0,
       ShmErrc::kWrongState},
      {RecoveryStep::kDrainHostToGuest, 9, 0, ShmErrc::kInvalidState},
      {RecoveryStep::kResetRings, static_cast<uint32_t>(PeerState::kGoodbye), 1,
       ShmErrc::kStaleEpoch},
      {RecoveryStep::kReclaimSlots, static_cast<uint32_t>(PeerState::kEmpty), 0,
       ShmErrc::kWrongState},
      {RecoveryStep::kDropMappingLeases, static_cast<uint32_t>(PeerState::kGoodbye), 1,
       ShmErrc::kStaleEpoch},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("after step ", static_cast<int>(c.after)));
    const uint32_t epoch = Occupy(kPeer, 0);
    PlantTraffic();
    std::optional<Bytes> scribbled;
    bool leases_dropped = false;
    RecoveryHooks hooks;
    hooks.after_step = [&](RecoveryStep step) {
      if (step != c.after) return;
      EntryPtr(kPeer)->state = c.state;
      EntryPtr(kPeer)->epoch = epoch + c.epoch_delta;
      scribbled = Snapshot();
    };
    hooks.drop_mapping_leases = [&](uint32_t) -> uint32_t {
      leases_dropped = true;
      return 0;
    };
    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg_, {kPeer, epoch}, hooks);
    EXPECT_EQ(ShmErrcOf(report.status()), c.errc) << report.status();
    ASSERT_TRUE(scribbled.has_value());
    EXPECT_TRUE(Unchanged(layout(), *scribbled, Snapshot()));
    EXPECT_EQ(leases_dropped, c.after == RecoveryStep::kDropMappingLeases);
    // Leave the entry and the pool clean for the next case.
    EntryPtr(kPeer)->state = static_cast<uint32_t>(PeerState::kGoodbye);
    EntryPtr(kPeer)->epoch = epoch;
    ASSERT_TRUE(RecoverPeer(*seg_, {kPeer, epoch}).ok());
    for (uint32_t k = 0; k < pool_.num_classes(); ++k) {
      for (uint32_t j = 0; j < pool_.class_config(k).slot_count; ++j) {
        const SlotMetaSnapshot m = pool_.Meta(k, j).value();
        if (m.state == kSlotAllocated) {
          ASSERT_TRUE(pool_.Free(SlotRef{static_cast<uint8_t>(k), 0, j, m.generation}).ok());
        }
      }
    }
  }
}

}  // namespace
}  // namespace shmhub::shm
