// A hub segment as one process sees it (format §2 to §4, §12, §15, §16):
// the file, its mapping, and the geometry this process trusts.
//
// The host Create()s the segment: it refuses configurations our creator does
// not make (D-9, §8.2), lays the segment out with ComputeLayout, initialises
// every structure in a fresh file under a temporary name, publishes the magic
// last with release (D-5), then gives the file its final name (D-7). Or it
// Adopt()s the segment a predecessor left at the path, validated as a guest
// would validate it. Either way it holds the path's PathLock for the
// Segment's lifetime, which marks the segment live, and removes the file
// when the Segment is destroyed (C-G5) unless told to keep it for the next
// host (KeepFileForNextHost).
//
// A guest Attach()es by path or by a descriptor from bootstrap, maps the
// whole file and runs the full §3 validation (D-6). Either way the geometry
// this object reports (layout(), the ring and pool views, the thresholds) is
// the process's own trusted copy: the host's comes from its config, a guest's
// from the values it validated. header() is the raw shared header, which any
// guest may rewrite at any time; read it only through the accessors here or
// with the care of §1.7.
//
// Views returned by peers(), the ring accessors and pool() point into the
// current mapping and are invalidated by Grow() and by a RemapIfGrown() that
// returns true: rebuild them after either. Not thread-safe: Grow and
// RemapIfGrown need exclusive access to the object; everything else is const
// and may be called concurrently between remaps. The shared structures
// themselves are process-safe through their own views.
#ifndef SHMHUB_SHM_SEGMENT_H_
#define SHMHUB_SHM_SEGMENT_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/layout.h"
#include "shm/path_lock.h"
#include "shm/peer_table.h"
#include "shm/segment_file.h"
#include "shm/var_slot_pool.h"

namespace shmhub::shm {

struct SegmentConfig {
  uint32_t max_guests = 0;     // 1..255
  uint32_t ring_capacity = 0;  // bipbuf_capacity, 1..2^31
  // 1..256 classes with strictly ascending slot_size >= 8 and
  // 1 <= slot_count <= 0xFFFFFFFE.
  std::vector<SlotClassConfig> classes;
  uint32_t max_payload_size = 0;
  uint32_t inline_threshold = 0;       // 0 = kDefaultInlineThreshold
  uint64_t heartbeat_interval_ns = 0;  // 0 = heartbeats off
  mode_t mode = 0660;                  // exact file mode; the umask does not apply
  // Per peer index, the epoch each Empty entry starts at (missing: 0), so a
  // new segment at a path never hands out an earlier segment's (peer, epoch)
  // pairs again (§5.3: the next take increments it).
  std::vector<uint32_t> initial_epochs;
};

// One setting in which an existing segment differs from the configuration
// a host wants: `field` is the header's name for it (§3, §8.1).
struct GeometryDifference {
  std::string field;
  std::string found;   // in the segment
  std::string wanted;  // in the configuration
};

class Segment {
 public:
  // Host. Creates the segment file at `path` (§15 D-7). Errors: kBadConfig
  // (a configuration our creator refuses), kLayoutOverflow, kSymlink,
  // kNotRegularFile, kLiveSegment (another host holds the file), kIo.
  static absl::StatusOr<std::unique_ptr<Segment>> Create(const std::string& path,
                                                         const SegmentConfig& config);
  // The same with the path's lock already taken (PathLock::Acquire(path)).
  static absl::StatusOr<std::unique_ptr<Segment>> Create(const std::string& path,
                                                         const SegmentConfig& config,
                                                         PathLock lock);
  // Host, taking over the segment a previous host left at `path` (it
  // crashed, or stopped and kept the file): opens it like a guest, maps it
  // and runs the full §3 validation (D-6); nothing is written. `*lock` is
  // the path's lock and moves into the Segment only on success. The
  // trusted geometry is the validated one: compare it with the wanted
  // configuration (GeometryDifferences) before relying on it. Errors: those
  // of Attach, and kNotInitialised when no file is there.
  static absl::StatusOr<std::unique_ptr<Segment>> Adopt(const std::string& path, PathLock* lock);
  // Guest. Opens `path` with O_NOFOLLOW, maps the whole file and validates it
  // (§3); the errors are those of SegmentFile::Open and ValidateSegment.
  static absl::StatusOr<std::unique_ptr<Segment>> Attach(const std::string& path);
  // Guest, for the segment descriptor received at bootstrap. `fd` is
  // duplicated; the caller still owns and closes it.
  static absl::StatusOr<std::unique_ptr<Segment>> AttachFd(int fd);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  bool is_host() const { return is_host_; }
  uint8_t* base() const { return file_.data(); }
  uint64_t mapped_size() const { return file_.mapped_size(); }
  int fd() const { return file_.fd(); }
  // Empty for a segment attached by descriptor.
  const std::string& path() const { return file_.path(); }

  const SegmentLayout& layout() const { return layout_; }
  // The raw shared header: untrusted for guests.
  const SegmentHeader& header() const;

  PeerTable peers() const;
  // The rings of peer index `peer_index` (peer id - 1), with the trusted
  // capacity. Requires peer_index < layout().max_guests.
  BipBuffer GuestToHostRing(uint32_t peer_index) const;
  BipBuffer HostToGuestRing(uint32_t peer_index) const;
  VarSlotPool pool() const;

  // Trusted copies taken at creation or attach (§3, §7.6).
  uint32_t EffectiveInlineThreshold() const;
  uint64_t heartbeat_interval_ns() const { return heartbeat_interval_ns_; }
  uint32_t max_payload_size() const { return max_payload_size_; }

  // host_goodbye (§3, §12): the host raises it before shutting down; guests
  // poll it and detach once it is set.
  void SetHostGoodbye();
  bool HostGoodbye() const;

  // Host, §16: extends the file to `new_size`, maps it anew, unmaps the old
  // mapping, then publishes current_size = new_size. A smaller size is
  // refused (kBadConfig); the current size is a no-op. kWrongState for a
  // guest. The caller then rings every attached guest's doorbell.
  absl::Status Grow(uint64_t new_size);
  // Guest, §16 with D-13: when current_size exceeds the mapping, remaps the
  // whole file and returns true; false when nothing grew. Refuses, without
  // touching the file or the mapping, a file shorter than current_size
  // (kFileShorterThanSegment). kWrongState for the host.
  absl::StatusOr<bool> RemapIfGrown();

  // Host: removes the file now (it stays mapped and locked). Done by the
  // destructor otherwise. kWrongState for a guest, which never unlinks.
  absl::Status Unlink();
  // Host: the destructor leaves the file in place (and host_goodbye as it
  // is), for the next host to adopt.
  void KeepFileForNextHost() { keep_file_ = true; }

  // Where this segment's geometry differs from `wanted`; empty when a host
  // configured with `wanted` may use it as it is. Compares what the header
  // fixes at creation: max_guests, bipbuf_capacity, the slot classes,
  // max_payload_size, inline_threshold and heartbeat_interval_ns.
  std::vector<GeometryDifference> GeometryDifferences(const SegmentConfig& wanted) const;

 private:
  Segment(SegmentFile file, bool is_host, SegmentLayout layout, uint32_t max_payload_size,
          uint32_t inline_threshold, uint64_t heartbeat_interval_ns);
  static absl::StatusOr<std::unique_ptr<Segment>> AttachFile(SegmentFile file);
  BipBuffer RingAt(uint64_t header_offset) const;

  // Declared before the file, so it is released only after the file is
  // closed (and, unless kept, removed).
  PathLock lock_;
  SegmentFile file_;
  const bool is_host_;
  const SegmentLayout layout_;
  const uint32_t max_payload_size_;
  const uint32_t inline_threshold_;
  const uint64_t heartbeat_interval_ns_;
  bool unlinked_ = false;
  bool keep_file_ = false;
};

// Tells the guests of the segment file at `path`, if any and if its header
// is a valid format-7 header, that its host is gone for good: raises its
// host_goodbye (§3, §12), so they detach rather than wait on a segment that
// is about to be replaced. Does nothing to anything else found there. For
// a host that owns the path (PathLock) and is about to Create anew.
void RetireSegmentFile(const std::string& path);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_SEGMENT_H_
