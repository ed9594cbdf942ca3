// The file side of a hub segment (format §15 D-7, §16): a descriptor and its
// MAP_SHARED mapping.
//
// The host makes the file under a temporary name in the target's directory
// (O_EXCL, explicit fchmod, ftruncate, mmap), initialises it through the
// mapping and then Publish()es it under the final name. Publishing never
// truncates or rewrites an existing file: a stale one is replaced by the new
// inode, so processes still mapping it keep valid memory (no SIGBUS). A guest
// opens an existing file (or a descriptor it was handed) and maps all of it,
// and so does a host that adopts the segment a predecessor left.
//
// Which host owns the path is not decided here but by its PathLock
// (shm/path_lock.h), which the host takes before any of this: this file's
// descriptor is handed to guests, so a lock on it would be theirs too.
//
// Nothing here looks at the bytes; Segment owns the format. Not thread-safe:
// one owner calls the methods.
#ifndef SHMHUB_SHM_SEGMENT_FILE_H_
#define SHMHUB_SHM_SEGMENT_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/unique_fd.h"

namespace shmhub::shm {

// A read-write MAP_SHARED mapping of the first size() bytes of a file,
// unmapped on destruction. Size 0 is an empty mapping (mmap refuses length
// 0), so an empty file can still reach validation and be refused there.
class Mapping {
 public:
  Mapping() = default;
  static absl::StatusOr<Mapping> Map(int fd, uint64_t size);
  ~Mapping();
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  absl::Span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }

 private:
  void Reset();

  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

class SegmentFile {
 public:
  // Host, §15 steps 1 to 5: a new file next to `path` (same directory, so
  // Publish can rename it), opened O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC,
  // given exactly `mode` whatever the umask, sized to `size` (zero-filled)
  // and mapped. Until Publish succeeds
  // the file has only its temporary name, which the destructor removes.
  // kBadConfig for size 0: an empty file can never be a segment (C-G2).
  static absl::StatusOr<SegmentFile> CreateTemporary(const std::string& path, mode_t mode,
                                                     uint64_t size);

  // Host, §15 step 8: moves the temporary file to its final path. Refuses a
  // symlink there (kSymlink) and anything but a regular file
  // (kNotRegularFile). A regular file there is stale (the caller owns the
  // path) and is replaced by this inode.
  absl::Status Publish();

  // Guest, §12 step 1: open(O_RDWR|O_NOFOLLOW|O_CLOEXEC), fstat, map the
  // whole file. kSymlink for a symlink, kNotRegularFile for anything that is
  // not a regular file.
  static absl::StatusOr<SegmentFile> Open(const std::string& path);
  // Guest: the same for a descriptor handed over by bootstrap. `fd` is
  // duplicated (close-on-exec); the caller keeps its own.
  static absl::StatusOr<SegmentFile> FromFd(int fd);

  // The file's current size (fstat).
  absl::StatusOr<uint64_t> FileSize() const;
  // Host, §16: ftruncate to `new_size`, which must not be smaller than the
  // file, then Remap(new_size).
  absl::Status Extend(uint64_t new_size);
  // Maps the first `new_size` bytes anew, then unmaps the old mapping. Every
  // pointer into the old mapping is invalid afterwards. On error the old
  // mapping is kept.
  absl::Status Remap(uint64_t new_size);

  // Removes path() if it still names this file's inode; a path that is gone
  // or now names another file (a new host's) is left alone. Call it while
  // still holding the lock, so no new host can have replaced the file
  // between the check and the unlink.
  absl::Status Unlink();

  // Removes the temporary file if Publish never succeeded, then unmaps and
  // closes (dropping the host's lock).
  ~SegmentFile();
  SegmentFile(SegmentFile&& other) noexcept;
  SegmentFile& operator=(SegmentFile&& other) noexcept;
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;

  int fd() const { return fd_.get(); }
  uint8_t* data() const { return mapping_.data(); }
  uint64_t mapped_size() const { return mapping_.size(); }
  absl::Span<const uint8_t> bytes() const { return mapping_.bytes(); }
  // Final path; empty for a file that came from a descriptor.
  const std::string& path() const { return path_; }

 private:
  SegmentFile() = default;
  void RemoveTemporary();

  // Declared before the mapping so that it is closed (dropping the lock)
  // only after the mapping is gone.
  UniqueFd fd_;
  Mapping mapping_;
  std::string path_;
  std::string temp_path_;  // non-empty until Publish succeeds
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_SEGMENT_FILE_H_
