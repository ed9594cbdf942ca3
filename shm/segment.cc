#include "shm/segment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "shm/segment_validation.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// The structure of type T at `offset` in the mapping. Through void* because
// the format, not the byte pointer's type, guarantees T's alignment.
template <typename T>
T* At(uint8_t* base, uint64_t offset) {
  return static_cast<T*>(static_cast<void*>(base + offset));
}

// One plain load of a header field no §3 step constrains (any value has a
// meaning), for a guest's trusted copy.
template <typename T>
T LoadPlain(const uint8_t* base, uint64_t offset) {
  T value;
  std::memcpy(&value, base + offset, sizeof(T));
  return value;
}

absl::Status BadConfig(absl::string_view message) {
  return ShmError(ShmErrc::kBadConfig, message);
}

// What our creator refuses beyond the format's limits: D-9's ascending
// classes and §8.2's slot_size >= 8.
absl::Status CheckConfig(const SegmentConfig& c) {
  if (c.max_guests < 1 || c.max_guests > kMaxGuests) {
    return BadConfig(absl::StrCat("max_guests ", c.max_guests, " is outside 1..", kMaxGuests));
  }
  if (c.ring_capacity < 1 || c.ring_capacity > kMaxRingCapacity) {
    return BadConfig(absl::StrCat("ring_capacity ", c.ring_capacity, " is outside 1..2^31"));
  }
  if (c.classes.empty() || c.classes.size() > kMaxSlotClasses) {
    return BadConfig(absl::StrCat("number of slot classes ", c.classes.size(), " is outside 1..",
                                  kMaxSlotClasses));
  }
  for (size_t k = 0; k < c.classes.size(); ++k) {
    const SlotClassConfig& cls = c.classes[k];
    if (cls.slot_size < 8) {
      return BadConfig(absl::StrCat("slot class ", k, " slot_size ", cls.slot_size, " < 8"));
    }
    if (cls.slot_count < 1 || cls.slot_count > kMaxSlotCount) {
      return BadConfig(absl::StrCat("slot class ", k, " slot_count ", cls.slot_count,
                                    " is outside 1..", kMaxSlotCount));
    }
    if (k > 0 && cls.slot_size <= c.classes[k - 1].slot_size) {
      return BadConfig(absl::StrCat("slot class ", k, " slot_size ", cls.slot_size,
                                    " is not above class ", k - 1, "'s ",
                                    c.classes[k - 1].slot_size, " (sizes must ascend)"));
    }
  }
  if ((c.mode & ~mode_t{07777}) != 0) {
    return BadConfig(absl::StrFormat("mode 0%o has bits beyond 07777", c.mode));
  }
  return absl::OkStatus();
}

// §3, §4, §5.4 init, §6.1, §8.2 on the zero-filled file, then the magic.
void Initialise(uint8_t* base, const SegmentLayout& l, const SegmentConfig& c) {
  SegmentHeader h{};  // reserved bytes, host_goodbye and (for now) the magic are 0
  h.version = kVersion;
  h.header_size = kHeaderSize;
  h.total_size = l.total_size;
  h.max_payload_size = c.max_payload_size;
  h.inline_threshold = c.inline_threshold;
  h.max_guests = l.max_guests;
  h.bipbuf_capacity = l.ring_capacity;
  h.peer_table_offset = kPeerTableOffset;
  h.var_pool_offset = l.var_pool_offset;
  h.heartbeat_interval_ns = c.heartbeat_interval_ns;
  h.num_var_slot_classes = static_cast<uint32_t>(l.classes.size());
  h.current_size = l.total_size;
  std::memcpy(base, &h, sizeof(h));
  for (uint32_t i = 0; i < l.max_guests; ++i) {
    const uint32_t epoch = i < c.initial_epochs.size() ? c.initial_epochs[i] : 0;
    PeerEntryView(At<PeerEntry>(base, l.EntryOffset(i))).Init(l.RingOffset(i), epoch);
    BipBuffer::Init(At<RingHeader>(base, l.GuestToHostHeader(i)), l.ring_capacity);
    BipBuffer::Init(At<RingHeader>(base, l.HostToGuestHeader(i)), l.ring_capacity);
  }
  VarSlotPool::Format(base, l);
  // Release (D-5): an attacher whose acquire load sees the magic also sees
  // every store above.
  std::atomic_ref<uint64_t>(At<SegmentHeader>(base, 0)->magic)
      .store(kMagic, std::memory_order_release);
}

}  // namespace

Segment::Segment(SegmentFile file, bool is_host, SegmentLayout layout, uint32_t max_payload_size,
                 uint32_t inline_threshold, uint64_t heartbeat_interval_ns)
    : file_(std::move(file)),
      is_host_(is_host),
      layout_(std::move(layout)),
      max_payload_size_(max_payload_size),
      inline_threshold_(inline_threshold),
      heartbeat_interval_ns_(heartbeat_interval_ns) {}

Segment::~Segment() {
  // Graceful shutdown removes the file (§15); unlinking while the lock is
  // still held means no new host can have taken the path over meanwhile. A
  // destructor cannot report a failure: the file is left behind, and the
  // next host finds it stale and replaces it.
  if (is_host_ && !unlinked_ && !keep_file_) file_.Unlink().IgnoreError();
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Create(const std::string& path,
                                                         const SegmentConfig& config) {
  if (absl::Status s = CheckConfig(config); !s.ok()) return s;
  absl::StatusOr<PathLock> lock = PathLock::Acquire(path);
  if (!lock.ok()) return lock.status();
  return Create(path, config, *std::move(lock));
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Create(const std::string& path,
                                                         const SegmentConfig& config,
                                                         PathLock lock) {
  if (absl::Status s = CheckConfig(config); !s.ok()) return s;
  absl::StatusOr<SegmentLayout> layout =
      ComputeLayout(config.max_guests, config.ring_capacity, config.classes);
  if (!layout.ok()) return layout.status();
  absl::StatusOr<SegmentFile> file =
      SegmentFile::CreateTemporary(path, config.mode, layout->total_size);
  if (!file.ok()) return file.status();
  Initialise(file->data(), *layout, config);
  if (absl::Status s = file->Publish(); !s.ok()) return s;
  std::unique_ptr<Segment> segment(new Segment(*std::move(file), /*is_host=*/true,
                                               *std::move(layout), config.max_payload_size,
                                               config.inline_threshold,
                                               config.heartbeat_interval_ns));
  segment->lock_ = std::move(lock);
  return segment;
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Adopt(const std::string& path, PathLock* lock) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 && errno == ENOENT) {
    return ShmError(ShmErrc::kNotInitialised, absl::StrCat("no segment file at ", path));
  }
  absl::StatusOr<SegmentFile> file = SegmentFile::Open(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::unique_ptr<Segment>> found = AttachFile(*std::move(file));
  if (!found.ok()) return found.status();
  std::unique_ptr<Segment> segment(new Segment(std::move((*found)->file_), /*is_host=*/true,
                                               (*found)->layout_, (*found)->max_payload_size_,
                                               (*found)->inline_threshold_,
                                               (*found)->heartbeat_interval_ns_));
  segment->lock_ = std::move(*lock);
  return segment;
}

std::vector<GeometryDifference> Segment::GeometryDifferences(const SegmentConfig& wanted) const {
  std::vector<GeometryDifference> differences;
  auto compare = [&](absl::string_view field, uint64_t found, uint64_t want) {
    if (found != want) {
      differences.push_back({std::string(field), absl::StrCat(found), absl::StrCat(want)});
    }
  };
  compare("max_guests", layout_.max_guests, wanted.max_guests);
  compare("bipbuf_capacity", layout_.ring_capacity, wanted.ring_capacity);
  auto classes_text = [](const std::vector<SlotClassConfig>& classes) {
    std::vector<std::string> parts;
    for (const SlotClassConfig& c : classes) {
      parts.push_back(absl::StrCat(c.slot_size, ":", c.slot_count));
    }
    return absl::StrJoin(parts, ",");
  };
  std::vector<SlotClassConfig> found_classes;
  for (const SlotClassLayout& c : layout_.classes) found_classes.push_back(c.config);
  if (classes_text(found_classes) != classes_text(wanted.classes)) {
    differences.push_back(
        {"slot classes", classes_text(found_classes), classes_text(wanted.classes)});
  }
  compare("max_payload_size", max_payload_size_, wanted.max_payload_size);
  compare("inline_threshold", inline_threshold_, wanted.inline_threshold);
  compare("heartbeat_interval_ns", heartbeat_interval_ns_, wanted.heartbeat_interval_ns);
  return differences;
}

void RetireSegmentFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) < kHeaderSize) {
    return;
  }
  absl::StatusOr<Mapping> header = Mapping::Map(fd.get(), kHeaderSize);
  if (!header.ok()) return;
  auto* h = At<SegmentHeader>(header->data(), 0);
  // Acquire: only a header whose magic and version are the format's is one
  // whose guests read host_goodbye where we write it.
  if (std::atomic_ref<uint64_t>(h->magic).load(std::memory_order_acquire) != kMagic ||
      std::atomic_ref<uint32_t>(h->version).load(std::memory_order_relaxed) != kVersion) {
    return;
  }
  // Release, as SetHostGoodbye: a guest that sees it sees what came before.
  std::atomic_ref<uint32_t>(h->host_goodbye).store(1, std::memory_order_release);
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Attach(const std::string& path) {
  absl::StatusOr<SegmentFile> file = SegmentFile::Open(path);
  if (!file.ok()) return file.status();
  return AttachFile(*std::move(file));
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::AttachFd(int fd) {
  absl::StatusOr<SegmentFile> file = SegmentFile::FromFd(fd);
  if (!file.ok()) return file.status();
  return AttachFile(*std::move(file));
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::AttachFile(SegmentFile file) {
  // The whole file is mapped, so the mapping's size is the file size.
  absl::StatusOr<SegmentLayout> layout = ValidateSegment(file.bytes(), file.mapped_size());
  if (!layout.ok()) return layout.status();
  const uint8_t* base = file.data();
  const auto max_payload = LoadPlain<uint32_t>(base, offsetof(SegmentHeader, max_payload_size));
  const auto threshold = LoadPlain<uint32_t>(base, offsetof(SegmentHeader, inline_threshold));
  const auto heartbeat = LoadPlain<uint64_t>(base, offsetof(SegmentHeader, heartbeat_interval_ns));
  return std::unique_ptr<Segment>(new Segment(std::move(file), /*is_host=*/false,
                                              *std::move(layout), max_payload, threshold,
                                              heartbeat));
}

const SegmentHeader& Segment::header() const { return *At<SegmentHeader>(base(), 0); }

PeerTable Segment::peers() const {
  return PeerTable(At<PeerEntry>(base(), kPeerTableOffset), layout_.max_guests);
}

BipBuffer Segment::RingAt(uint64_t header_offset) const {
  return BipBuffer(At<RingHeader>(base(), header_offset),
                   base() + header_offset + kRingHeaderSize, layout_.ring_capacity);
}

BipBuffer Segment::GuestToHostRing(uint32_t peer_index) const {
  return RingAt(layout_.GuestToHostHeader(peer_index));
}

BipBuffer Segment::HostToGuestRing(uint32_t peer_index) const {
  return RingAt(layout_.HostToGuestHeader(peer_index));
}

VarSlotPool Segment::pool() const { return VarSlotPool(base(), layout_); }

uint32_t Segment::EffectiveInlineThreshold() const {
  return inline_threshold_ == 0 ? kDefaultInlineThreshold : inline_threshold_;
}

void Segment::SetHostGoodbye() {
  // Release: a guest that sees the flag also sees everything the host wrote
  // before raising it (§3).
  std::atomic_ref<uint32_t>(At<SegmentHeader>(base(), 0)->host_goodbye)
      .store(1, std::memory_order_release);
}

bool Segment::HostGoodbye() const {
  // Acquire pairs with the release in SetHostGoodbye.
  return std::atomic_ref<uint32_t>(At<SegmentHeader>(base(), 0)->host_goodbye)
             .load(std::memory_order_acquire) != 0;
}

absl::Status Segment::Grow(uint64_t new_size) {
  if (!is_host_) {
    return ShmError(ShmErrc::kWrongState,
                    "only the host grows a segment; a guest calls RemapIfGrown (D-13)");
  }
  // The host's mapping always covers exactly current_size: its own copy.
  const uint64_t current = mapped_size();
  if (new_size < current) {
    return ShmError(ShmErrc::kBadConfig, absl::StrCat("cannot shrink the segment from ", current,
                                                      " to ", new_size, " bytes"));
  }
  if (new_size == current) return absl::OkStatus();
  if (absl::Status s = file_.Extend(new_size); !s.ok()) return s;
  // Release, after the file is extended: a guest whose acquire load sees the
  // new size finds a file at least that long (§16).
  std::atomic_ref<uint64_t>(At<SegmentHeader>(base(), 0)->current_size)
      .store(new_size, std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<bool> Segment::RemapIfGrown() {
  if (is_host_) {
    return ShmError(ShmErrc::kWrongState, "the host grows its segment with Grow, never remaps");
  }
  // Acquire pairs with the release in Grow.
  const uint64_t current = std::atomic_ref<uint64_t>(At<SegmentHeader>(base(), 0)->current_size)
                               .load(std::memory_order_acquire);
  if (current <= mapped_size()) return false;
  absl::StatusOr<uint64_t> file_size = file_.FileSize();
  if (!file_size.ok()) return file_size.status();
  // D-13: never ftruncate; a file shorter than the header claims is refused.
  if (*file_size < current) {
    return ShmError(ShmErrc::kFileShorterThanSegment,
                    absl::StrCat("file size ", *file_size, " < current_size ", current));
  }
  if (absl::Status s = file_.Remap(*file_size); !s.ok()) return s;
  return true;
}

absl::Status Segment::Unlink() {
  if (!is_host_) return ShmError(ShmErrc::kWrongState, "guests never unlink the segment (§15)");
  if (absl::Status s = file_.Unlink(); !s.ok()) return s;
  unlinked_ = true;
  return absl::OkStatus();
}

}  // namespace shmhub::shm
