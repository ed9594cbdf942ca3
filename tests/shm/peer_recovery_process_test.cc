// Crash recovery (format §14) with real processes.
//
// C-R7: a forked guest attaches to the host's file, holds pool slots and has
// SLOT_REF entries in flight in both directions when it is SIGKILLed; the
// recovery must give every slot back and leave the entry reusable.
//
// The parts of C-R1 and C-R6 that happen *inside* a step are watched with a
// write trap: a forked child that runs RecoverPeer write-protects pages of
// its own mapping, the first store into one raises SIGSEGV, the handler
// records what the segment looks like at that instant, lifts the protection
// and returns, and the store is retried. mprotect changes only the child's
// page tables, so the parent's mapping of the same file stays writable and
// the parent checks the child's observations and the final segment.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/frame.h"
#include "shm/layout.h"
#include "shm/peer_recovery.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "shm/slot_ref.h"
#include "shm/var_slot_pool.h"
#include "tests/testing/child_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::shm {
namespace {

using shmhub::testing::ChildProcess;
using shmhub::testing::TempDir;

constexpr int kReadyTimeoutMs = 10'000;

size_t PageSize() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

std::unique_ptr<Segment> MustCreate(const std::string& path, const SegmentConfig& config) {
  absl::StatusOr<std::unique_ptr<Segment>> created = Segment::Create(path, config);
  EXPECT_TRUE(created.ok()) << created.status();
  return created.ok() ? *std::move(created) : nullptr;
}

absl::Span<const uint8_t> AsBytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// One entry through a real grant and commit; false on any failure, so both
// the parent (EXPECT) and a child (exit code) can use it.
bool PutSlotRef(BipBuffer& ring, const SlotRef& ref) {
  absl::StatusOr<absl::Span<uint8_t>> grant = ring.TryGrant(kSlotRefFrameSize);
  return grant.ok() && WriteSlotRefFrame(*grant, ref).ok() && ring.Commit(kSlotRefFrameSize).ok();
}
bool PutInline(BipBuffer& ring, const std::string& text) {
  const uint32_t len = InlineFrameSize(static_cast<uint32_t>(text.size()));
  absl::StatusOr<absl::Span<uint8_t>> grant = ring.TryGrant(len);
  return grant.ok() && WriteInlineFrame(*grant, AsBytes(text)).ok() && ring.Commit(len).ok();
}

// Allocates a slot of exactly `slot_size` for `owner` and stores `payload`
// in it with its length prefix (§7.5).
absl::StatusOr<SlotRef> AllocWith(VarSlotPool& pool, uint32_t slot_size, uint32_t owner,
                                  const std::string& payload) {
  absl::StatusOr<SlotRef> ref = pool.Allocate(slot_size, owner);
  if (!ref.ok()) return ref.status();
  absl::StatusOr<absl::Span<uint8_t>> slot = pool.SlotData(*ref);
  if (!slot.ok()) return slot.status();
  if (absl::Status s = WriteSlotPayload(*slot, AsBytes(payload)); !s.ok()) return s;
  return ref;
}

// Consumes the next entry of `ring`, which must be a SLOT_REF carrying
// `expected`, and frees its slot: what a receiver does once it is done.
bool TakeAndFreeSlotRef(BipBuffer& ring, VarSlotPool& pool, const std::string& expected) {
  absl::StatusOr<absl::Span<const uint8_t>> readable = ring.TryRead();
  if (!readable.ok() || readable->empty()) return false;
  absl::StatusOr<Frame> frame = ParseFrame(*readable);
  if (!frame.ok() || frame->kind != FrameKind::kSlotRef) return false;
  absl::StatusOr<absl::Span<uint8_t>> slot = pool.SlotData(frame->slot_ref);
  if (!slot.ok()) return false;
  absl::StatusOr<absl::Span<const uint8_t>> payload = ReadSlotPayload(*slot);
  if (!payload.ok() ||
      std::string(reinterpret_cast<const char*>(payload->data()), payload->size()) != expected) {
    return false;
  }
  return pool.Free(frame->slot_ref).ok() && ring.Release(frame->total_len).ok();
}

// A trivially copyable T in MAP_SHARED anonymous memory made before fork:
// the child writes it, the parent reads it after the child has exited.
template <typename T>
class SharedBlock {
 public:
  SharedBlock() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    value_ = p == MAP_FAILED ? nullptr : new (p) T();
  }
  ~SharedBlock() {
    if (value_ != nullptr) ::munmap(value_, sizeof(T));
  }
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;

  T* get() const { return value_; }
  T* operator->() const { return value_; }

 private:
  T* value_ = nullptr;
};

// What a child that ran RecoverPeer saw.
struct ChildReport {
  bool ran = false;
  ShmErrc errc = ShmErrc::kNone;
  uint32_t entries_scanned = 0;
  uint32_t inline_entries_seen = 0;
  uint32_t slots_freed_from_ring = 0;
  uint32_t slots_reclaimed_by_owner = 0;
  uint32_t invalid_entries = 0;
  bool drain_bound_reached = false;
  uint32_t problem_count = 0;
};

void Record(const absl::StatusOr<RecoveryReport>& report, ChildReport& out) {
  out.ran = true;
  out.errc = ShmErrcOf(report.status());
  if (!report.ok()) return;
  out.entries_scanned = report->entries_scanned;
  out.inline_entries_seen = report->inline_entries_seen;
  out.slots_freed_from_ring = report->slots_freed_from_ring;
  out.slots_reclaimed_by_owner = report->slots_reclaimed_by_owner;
  out.invalid_entries = report->invalid_entries;
  out.drain_bound_reached = report->drain_bound_reached;
  out.problem_count = report->ProblemCount();
}

// ---- Write trap ------------------------------------------------------------------
//
// Only ever installed in a forked child. The handler runs on the thread that
// made the faulting store, in the middle of RecoverPeer; it only reads and
// writes the segment with lock-free atomics and calls mprotect, which is a
// plain system call on Linux (POSIX does not list it as async-signal-safe).

struct PageRange {
  uintptr_t start = 0;
  size_t length = 0;
  bool Contains(uintptr_t address) const { return address - start < length; }
};

// The pages covering [base + offset, base + offset + size).
PageRange PagesOf(const uint8_t* base, uint64_t offset, uint64_t size) {
  const uintptr_t page = PageSize();
  const uintptr_t first = reinterpret_cast<uintptr_t>(base + offset) & ~(page - 1);
  const uintptr_t end =
      (reinterpret_cast<uintptr_t>(base + offset + size) + page - 1) & ~(page - 1);
  return {first, end - first};
}

bool Overlap(const PageRange& a, const PageRange& b) {
  return a.start < b.start + b.length && b.start < a.start + a.length;
}

void Protect(const PageRange& range, int prot) {
  if (::mprotect(reinterpret_cast<void*>(range.start), range.length, prot) != 0) ::_exit(90);
}

uint32_t LoadWord(uint32_t& word) {
  // Relaxed: the handler runs on the thread that wrote the word.
  return std::atomic_ref<uint32_t>(word).load(std::memory_order_relaxed);
}

using FaultFn = bool (*)(uintptr_t address);
FaultFn g_on_fault = nullptr;

void OnSegv(int, siginfo_t* info, void*) {
  if (g_on_fault != nullptr && g_on_fault(reinterpret_cast<uintptr_t>(info->si_addr))) return;
  // Not a trapped page: a real crash. Fault again with the default action.
  ::signal(SIGSEGV, SIG_DFL);
}

bool InstallTrap(FaultFn fn) {
  g_on_fault = fn;
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_sigaction = OnSegv;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  return ::sigaction(SIGSEGV, &action, nullptr) == 0;
}

// ---- C-R1 inside the steps -------------------------------------------------------

enum class Ring : uint32_t { kNone = 0, kHostToGuest = 1, kGuestToHost = 2 };

struct OrderObservations {
  ChildReport report;
  Ring first_ring_written = Ring::kNone;
  uint32_t state_at_first_ring_write = 0;
  uint32_t host_to_guest_faults = 0;
  uint32_t guest_to_host_faults = 0;
  // At the first store into the guest->host header.
  uint32_t h2g_write = 0, h2g_watermark = 0, h2g_read = 0;
  uint32_t peer_slot_state = 0;
  uint32_t state_at_g2h_write = 0;
};

struct OrderTrap {
  PageRange h2g_pages;
  PageRange g2h_pages;
  PeerEntry* entry = nullptr;
  RingHeader* h2g = nullptr;
  SlotMeta* peer_slot = nullptr;
  OrderObservations seen;
};
OrderTrap g_order;

bool OrderFault(uintptr_t address) {
  OrderTrap& t = g_order;
  const bool h2g = t.h2g_pages.Contains(address);
  const bool g2h = t.g2h_pages.Contains(address);
  if (!h2g && !g2h) return false;
  if (t.seen.first_ring_written == Ring::kNone) {
    t.seen.first_ring_written = h2g ? Ring::kHostToGuest : Ring::kGuestToHost;
    t.seen.state_at_first_ring_write = LoadWord(t.entry->state);
  }
  if (h2g) {
    ++t.seen.host_to_guest_faults;
    Protect(t.h2g_pages, PROT_READ | PROT_WRITE);
  } else {
    ++t.seen.guest_to_host_faults;
    t.seen.h2g_write = LoadWord(t.h2g->write);
    t.seen.h2g_watermark = LoadWord(t.h2g->watermark);
    t.seen.h2g_read = LoadWord(t.h2g->read);
    t.seen.peer_slot_state = LoadWord(t.peer_slot->state);
    t.seen.state_at_g2h_write = LoadWord(t.entry->state);
    Protect(t.g2h_pages, PROT_READ | PROT_WRITE);
  }
  return true;
}

// Both ring headers are write-protected before RecoverPeer starts. Nothing
// else writes those pages, so the first fault on each is the first store the
// recovery makes into that ring's header: the drain's, for H->G, and the
// reset's, for G->H. This sees what the after_step snapshots cannot: that
// no ring word moves before the Goodbye store, and that the H->G reset is
// complete before the first G->H word is reset (both resets are step 3).
TEST(PeerRecoveryTrap, C_R1_GoodbyeFirstAndHostToGuestResetBeforeGuestToHost) {
  constexpr uint32_t kPeer = 2;
  TempDir dir;
  SegmentConfig config;
  config.max_guests = 2;
  // A ring of two pages keeps the two headers, and the entry, on different pages.
  config.ring_capacity = static_cast<uint32_t>(2 * PageSize());
  config.classes = {{64, 4}, {256, 2}};
  config.max_payload_size = 4096;
  std::unique_ptr<Segment> seg = MustCreate(dir.File("seg"), config);
  ASSERT_NE(seg, nullptr);
  const SegmentLayout& l = seg->layout();
  const uint32_t index = kPeer - 1;

  PeerEntryView entry = seg->peers().Entry(kPeer).value();
  const uint32_t epoch = entry.TryAttach().value();
  VarSlotPool pool = seg->pool();
  BipBuffer h2g = seg->HostToGuestRing(index);
  BipBuffer g2h = seg->GuestToHostRing(index);
  const SlotRef host_slot = AllocWith(pool, 64, kHostPeerId, "to the guest").value();
  const SlotRef peer_slot = AllocWith(pool, 256, kPeer, "to the host").value();
  ASSERT_TRUE(PutInline(h2g, "first"));
  ASSERT_TRUE(PutSlotRef(h2g, host_slot));
  ASSERT_TRUE(PutSlotRef(g2h, peer_slot));

  g_order = OrderTrap{};
  g_order.h2g_pages = PagesOf(seg->base(), l.HostToGuestHeader(index), kRingHeaderSize);
  g_order.g2h_pages = PagesOf(seg->base(), l.GuestToHostHeader(index), kRingHeaderSize);
  const PageRange entry_pages = PagesOf(seg->base(), l.EntryOffset(index), sizeof(PeerEntry));
  ASSERT_FALSE(Overlap(g_order.h2g_pages, g_order.g2h_pages));
  ASSERT_FALSE(Overlap(entry_pages, g_order.h2g_pages));
  ASSERT_FALSE(Overlap(entry_pages, g_order.g2h_pages));
  g_order.entry = reinterpret_cast<PeerEntry*>(seg->base() + l.EntryOffset(index));
  g_order.h2g = reinterpret_cast<RingHeader*>(seg->base() + l.HostToGuestHeader(index));
  g_order.peer_slot = reinterpret_cast<SlotMeta*>(
      seg->base() + l.SlotMetaOffset(peer_slot.class_idx, peer_slot.slot_idx));

  SharedBlock<OrderObservations> out;
  ASSERT_NE(out.get(), nullptr);
  ChildProcess child([&]() -> int {
    if (!InstallTrap(OrderFault)) return 2;
    Protect(g_order.h2g_pages, PROT_READ);
    Protect(g_order.g2h_pages, PROT_READ);
    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg, {kPeer, epoch});
    *out.get() = g_order.seen;
    Record(report, out->report);
    return 0;
  });
  ASSERT_EQ(child.Wait(), 0);

  const OrderObservations& seen = *out.get();
  ASSERT_TRUE(seen.report.ran);
  EXPECT_EQ(seen.report.errc, ShmErrc::kNone);
  EXPECT_EQ(seen.report.slots_freed_from_ring, 1u);
  EXPECT_EQ(seen.report.slots_reclaimed_by_owner, 1u);
  // Goodbye before any ring word changes; the drain writes H->G first.
  EXPECT_EQ(seen.first_ring_written, Ring::kHostToGuest);
  EXPECT_EQ(seen.state_at_first_ring_write, static_cast<uint32_t>(PeerState::kGoodbye));
  EXPECT_EQ(seen.host_to_guest_faults, 1u);
  EXPECT_EQ(seen.guest_to_host_faults, 1u);
  // H->G fully reset before the first G->H store, and the peer's slots not
  // yet reclaimed, the entry still Goodbye.
  EXPECT_EQ(seen.h2g_write, 0u);
  EXPECT_EQ(seen.h2g_watermark, 0u);
  EXPECT_EQ(seen.h2g_read, 0u);
  EXPECT_EQ(seen.peer_slot_state, kSlotAllocated);
  EXPECT_EQ(seen.state_at_g2h_write, static_cast<uint32_t>(PeerState::kGoodbye));
  // And the child's recovery is the parent's: the file is recovered.
  EXPECT_EQ(entry.LoadPair(), PeerPair(StateReading::FromRaw(0), epoch));
  EXPECT_EQ(*pool.FreeCount(0), 4u);
  EXPECT_EQ(*pool.FreeCount(1), 2u);
}

// ---- C-R6: the drain bound -----------------------------------------------------------
//
// A ring that never empties needs a writer racing the drain. The trap makes
// the race deterministic: the H->G header sits on the last 128 bytes of one
// page and its data starts the next. The two pages are protected in turn:
// while the data page is inaccessible, the drain's read of an entry faults
// and the handler (a hostile guest) moves `read` back to 0, then swaps the
// protection so the drain's `read` store faults next and swaps it back. The
// ring therefore always has another entry, and only the capacity/8 bound
// (§14 D-10) ends the drain.

struct BoundTrap {
  PageRange header_page;
  PageRange data_page;
  RingHeader* h2g = nullptr;
  bool armed = false;
  // Rewinds after which the hostile guest gives up, so a drain without its
  // bound fails this test instead of hanging it.
  uint32_t max_rewinds = 0;
  uint32_t data_faults = 0;
  uint32_t header_faults = 0;
};
BoundTrap g_bound;

bool BoundFault(uintptr_t address) {
  BoundTrap& t = g_bound;
  if (!t.armed) return false;
  if (t.data_page.Contains(address)) {
    ++t.data_faults;
    if (t.data_faults > t.max_rewinds) {
      t.armed = false;
      Protect(t.header_page, PROT_READ | PROT_WRITE);
      Protect(t.data_page, PROT_READ | PROT_WRITE);
      return true;
    }
    std::atomic_ref<uint32_t>(t.h2g->read).store(0, std::memory_order_relaxed);
    Protect(t.data_page, PROT_READ | PROT_WRITE);
    Protect(t.header_page, PROT_READ);
    return true;
  }
  if (t.header_page.Contains(address)) {
    ++t.header_faults;
    Protect(t.header_page, PROT_READ | PROT_WRITE);
    Protect(t.data_page, PROT_NONE);
    return true;
  }
  return false;
}

struct BoundObservations {
  ChildReport report;
  uint32_t data_faults = 0;
  uint32_t header_faults = 0;
};

TEST(PeerRecoveryTrap, C_R6_DrainBoundStopsARingThatNeverEmpties) {
  constexpr uint32_t kPeer = 1;
  const uint32_t page = static_cast<uint32_t>(PageSize());
  TempDir dir;
  SegmentConfig config;
  config.max_guests = 1;
  // ring_base = 192 and ring_stride = align64(128 + capacity) = page - 320:
  // the H->G header is at page - 128 and its data starts at `page`.
  config.ring_capacity = page - 448;
  config.classes = {{64, 2}};
  config.max_payload_size = 1024;
  std::unique_ptr<Segment> seg = MustCreate(dir.File("seg"), config);
  ASSERT_NE(seg, nullptr);
  const SegmentLayout& l = seg->layout();
  ASSERT_EQ(l.HostToGuestHeader(0), page - kRingHeaderSize);
  const uint32_t capacity = l.ring_capacity;
  const uint32_t bound = capacity / kFrameHeaderSize;

  PeerEntryView entry = seg->peers().Entry(kPeer).value();
  const uint32_t epoch = entry.TryAttach().value();
  // Full of the smallest entries: exactly `bound` of them.
  BipBuffer h2g = seg->HostToGuestRing(0);
  for (uint32_t i = 0; i < bound; ++i) ASSERT_TRUE(PutInline(h2g, ""));
  ASSERT_EQ(h2g.Occupancy(), capacity);

  g_bound = BoundTrap{};
  g_bound.header_page = PagesOf(seg->base(), l.HostToGuestHeader(0), kRingHeaderSize);
  g_bound.data_page = PagesOf(seg->base(), l.HostToGuestHeader(0) + kRingHeaderSize, capacity);
  ASSERT_EQ(g_bound.header_page.length, page);
  ASSERT_EQ(g_bound.data_page.length, page);
  ASSERT_FALSE(Overlap(g_bound.header_page, g_bound.data_page));
  g_bound.h2g = reinterpret_cast<RingHeader*>(seg->base() + l.HostToGuestHeader(0));
  g_bound.max_rewinds = 4 * bound;

  SharedBlock<BoundObservations> out;
  ASSERT_NE(out.get(), nullptr);
  ChildProcess child([&]() -> int {
    if (!InstallTrap(BoundFault)) return 2;
    g_bound.armed = true;
    Protect(g_bound.data_page, PROT_NONE);
    RecoveryHooks hooks;
    // The pool shares the data page: disarm before step 4 touches it.
    hooks.after_step = [](RecoveryStep step) {
      if (step != RecoveryStep::kDrainHostToGuest) return;
      g_bound.armed = false;
      Protect(g_bound.header_page, PROT_READ | PROT_WRITE);
      Protect(g_bound.data_page, PROT_READ | PROT_WRITE);
    };
    absl::StatusOr<RecoveryReport> report = RecoverPeer(*seg, {kPeer, epoch}, hooks);
    out->data_faults = g_bound.data_faults;
    out->header_faults = g_bound.header_faults;
    Record(report, out->report);
    return 0;
  });
  ASSERT_EQ(child.Wait(), 0);

  const BoundObservations& seen = *out.get();
  ASSERT_TRUE(seen.report.ran);
  EXPECT_EQ(seen.report.errc, ShmErrc::kNone);
  EXPECT_TRUE(seen.report.drain_bound_reached);
  EXPECT_EQ(seen.report.entries_scanned, bound);
  EXPECT_EQ(seen.report.inline_entries_seen, bound);
  EXPECT_EQ(seen.report.invalid_entries, 0u);
  EXPECT_EQ(seen.report.problem_count, 1u);
  // The trap really fed the drain: one rewind per entry read.
  EXPECT_EQ(seen.data_faults, bound);
  EXPECT_EQ(seen.header_faults, bound);
  // Steps 3 to 6 ran.
  const RingHeader* header = g_bound.h2g;
  EXPECT_EQ(header->write, 0u);
  EXPECT_EQ(header->watermark, 0u);
  EXPECT_EQ(header->read, 0u);
  EXPECT_EQ(header->capacity, capacity);
  EXPECT_EQ(entry.LoadPair(), PeerPair(StateReading::FromRaw(0), epoch));
}

// ---- C-R7 ------------------------------------------------------------------------------

class Pipe {
 public:
  Pipe() { EXPECT_EQ(::pipe2(fds_, O_CLOEXEC), 0); }
  ~Pipe() {
    CloseRead();
    CloseWrite();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  int read_fd() const { return fds_[0]; }
  int write_fd() const { return fds_[1]; }
  void CloseRead() { Close(fds_[0]); }
  void CloseWrite() { Close(fds_[1]); }

 private:
  static void Close(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int fds_[2] = {-1, -1};
};

uint64_t MonotonicNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

// Waits up to kReadyTimeoutMs for the child's one readiness byte.
bool AwaitReady(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, kReadyTimeoutMs) != 1) return false;
  char byte = 0;
  return ::read(fd, &byte, 1) == 1 && byte == 'R';
}

// The slots each side takes, as slot sizes (one class each).
constexpr std::array<uint32_t, 4> kHostSends = {64, 64, 256, 1024};   // on H->G
constexpr std::array<uint32_t, 4> kGuestSends = {64, 64, 256, 1024};  // on G->H
constexpr std::array<uint32_t, 2> kGuestHolds = {64, 256};            // in no ring

// The guest: claims the reservation, takes one host slot off H->G and frees
// it (so it holds no host slot, §14 known gaps), allocates its own slots,
// sends some to the host, reports ready and waits to be killed outside any
// allocate or free. Exit codes name the step that failed.
int GuestMain(const std::string& path, uint32_t peer_id, uint32_t epoch, int ready_fd) {
  absl::StatusOr<std::unique_ptr<Segment>> seg = Segment::Attach(path);
  if (!seg.ok()) return 10;
  absl::StatusOr<PeerEntryView> entry = (*seg)->peers().Entry(peer_id);
  if (!entry.ok() || !entry->ClaimFenced(epoch).ok()) return 11;
  entry->UpdateHeartbeat(MonotonicNs());
  VarSlotPool pool = (*seg)->pool();
  BipBuffer h2g = (*seg)->HostToGuestRing(peer_id - 1);
  BipBuffer g2h = (*seg)->GuestToHostRing(peer_id - 1);
  if (!TakeAndFreeSlotRef(h2g, pool, "host 0")) return 12;
  for (size_t i = 0; i < kGuestSends.size(); ++i) {
    absl::StatusOr<SlotRef> ref =
        AllocWith(pool, kGuestSends[i], peer_id, "guest " + std::to_string(i));
    if (!ref.ok() || !PutSlotRef(g2h, *ref)) return 13;
  }
  if (!PutInline(g2h, "inline from the guest")) return 14;
  for (uint32_t size : kGuestHolds) {
    if (!AllocWith(pool, size, peer_id, "held").ok()) return 15;
  }
  const char ready = 'R';
  if (::write(ready_fd, &ready, 1) != 1) return 16;
  for (;;) ::pause();
}

TEST(PeerRecoveryProcess, C_R7_SigkilledGuestWithSlotsInFlightBothWaysIsFullyRecovered) {
  constexpr uint32_t kPeer = 1;
  constexpr int kRounds = 3;
  TempDir dir;
  SegmentConfig config;
  config.max_guests = 2;
  config.ring_capacity = 1024;
  config.classes = {{64, 6}, {256, 4}, {1024, 2}};
  config.max_payload_size = 4096;
  std::unique_ptr<Segment> host = MustCreate(dir.File("seg"), config);
  ASSERT_NE(host, nullptr);
  VarSlotPool pool = host->pool();
  PeerEntryView entry = host->peers().Entry(kPeer).value();
  uint32_t previous_epoch = entry.Epoch();

  // The same entry is recovered and handed to a new guest each round: the
  // next guest must find it as good as new.
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // The daemon reserves the entry, then sends on H->G before the guest runs.
    absl::StatusOr<uint32_t> epoch = entry.TryReserve();
    ASSERT_TRUE(epoch.ok()) << epoch.status();
    EXPECT_EQ(*epoch, previous_epoch + 1);
    BipBuffer h2g = host->HostToGuestRing(kPeer - 1);
    for (size_t i = 0; i < kHostSends.size(); ++i) {
      absl::StatusOr<SlotRef> ref =
          AllocWith(pool, kHostSends[i], kHostPeerId, "host " + std::to_string(i));
      ASSERT_TRUE(ref.ok()) << ref.status();
      ASSERT_TRUE(PutSlotRef(h2g, *ref));
    }
    ASSERT_TRUE(PutInline(h2g, "inline from the host"));

    Pipe ready;
    const std::string path = host->path();
    const uint32_t claimed = *epoch;
    ChildProcess guest([&]() -> int {
      ready.CloseRead();
      return GuestMain(path, kPeer, claimed, ready.write_fd());
    });
    ready.CloseWrite();
    if (!AwaitReady(ready.read_fd())) {
      guest.Signal(SIGKILL);  // a stuck guest must fail the test, not hang it
      FAIL() << "guest not ready within " << kReadyTimeoutMs << " ms; exit " << guest.Wait();
    }

    // The host received the guest's first slot and is done with it; it holds
    // no other slot from this guest (the precondition of §14).
    BipBuffer g2h = host->GuestToHostRing(kPeer - 1);
    ASSERT_TRUE(TakeAndFreeSlotRef(g2h, pool, "guest 0"));

    guest.Signal(SIGKILL);
    ASSERT_EQ(guest.Wait(), 128 + SIGKILL);
    ASSERT_TRUE(entry.CheckPair(PeerState::kAttached, claimed).ok());
    ASSERT_NE(entry.LastHeartbeat(), 0u);

    absl::StatusOr<RecoveryReport> report = RecoverPeer(*host, {kPeer, claimed});
    ASSERT_TRUE(report.ok()) << report.status();

    // H->G held the host's slots 1..3 (the guest freed slot 0) and an inline.
    EXPECT_EQ(report->entries_scanned, kHostSends.size());
    EXPECT_EQ(report->slots_freed_from_ring, kHostSends.size() - 1);
    EXPECT_EQ(report->inline_entries_seen, 1u);
    // Every guest slot but the one the host freed.
    EXPECT_EQ(report->slots_reclaimed_by_owner, kGuestSends.size() - 1 + kGuestHolds.size());
    EXPECT_EQ(report->ProblemCount(), 0u);
    for (uint32_t k = 0; k < pool.num_classes(); ++k) {
      absl::StatusOr<uint32_t> free_count = pool.FreeCount(k);
      ASSERT_TRUE(free_count.ok()) << free_count.status();
      EXPECT_EQ(*free_count, pool.class_config(k).slot_count) << "class " << k;
    }
    for (const BipBuffer& ring :
         {host->HostToGuestRing(kPeer - 1), host->GuestToHostRing(kPeer - 1)}) {
      EXPECT_TRUE(ring.IsEmpty());
      EXPECT_EQ(ring.Occupancy(), 0u);
    }
    for (uint64_t offset : {host->layout().HostToGuestHeader(kPeer - 1),
                            host->layout().GuestToHostHeader(kPeer - 1)}) {
      RingHeader header;
      std::memcpy(&header, host->base() + offset, sizeof(header));
      EXPECT_EQ(header.write, 0u);
      EXPECT_EQ(header.watermark, 0u);
      EXPECT_EQ(header.read, 0u);
      EXPECT_EQ(header.capacity, config.ring_capacity);
    }
    EXPECT_EQ(entry.LoadPair(), PeerPair(StateReading::FromRaw(0), claimed));
    EXPECT_EQ(entry.LastHeartbeat(), 0u);
    previous_epoch = claimed;
  }
}

}  // namespace
}  // namespace shmhub::shm
