// Receiver-side resolution of MMAP_REF entries (format §9.3).
//
// MappingTable maps each region a peer announced, keyed by (map_id,
// map_generation), and turns (key, map_offset, payload_len) into bytes.
// MappingReceiver feeds one link's control socket into a table and applies
// the link rule of §9.2: the first malformed control message ends the
// channel, and nothing is resolved after it.
//
// Resolution is one non-blocking lookup. The spec's "retry an unknown key
// for about 2 s while draining the socket" is link policy: the caller loops
// on MappingReceiver::Resolve until it stops returning kMappingUnknownKey or
// its own deadline passes.
//
// The regions are written by the other process, which can change their bytes
// at any time: copy a payload before validating it. A sender that shrinks
// its file after we mapped it can still make a later read fault (SIGBUS);
// Attach refuses files already shorter than mapping_length, which is all a
// receiver can check.
//
// Thread-safety: none; one owner (the link) uses a table or receiver.
#ifndef SHMHUB_SHM_MAPPING_TABLE_H_
#define SHMHUB_SHM_MAPPING_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/mapping_control.h"
#include "shm/unique_fd.h"

namespace shmhub::shm {

enum class AttachResult {
  kAttached,   // a new key, now mapped
  kDuplicate,  // the key was already known: ignored, the first mapping is kept
};

class MappingTable {
 public:
  MappingTable() = default;
  ~MappingTable();
  MappingTable(MappingTable&& other) noexcept;
  MappingTable& operator=(MappingTable&& other) noexcept;
  MappingTable(const MappingTable&) = delete;
  MappingTable& operator=(const MappingTable&) = delete;

  // Maps the first mapping_length bytes of `region_fd` read-only and shared
  // under (map_id, map_generation). The descriptor is closed either way: the
  // mapping keeps the region alive. A known key is ignored (kDuplicate). kIo
  // when fstat or mmap fails, kMappingOutOfBounds when the file is shorter
  // than mapping_length; the caller may skip such a message (Rust logs it).
  absl::StatusOr<AttachResult> Attach(const MappingControlMessage& message, UniqueFd region_fd);

  // Bytes [map_offset, map_offset + payload_len) of the region. Errors:
  // kMappingUnknownKey, kMappingOverflow when the end overflows u64,
  // kMappingOutOfBounds when it lies past mapping_length.
  absl::StatusOr<absl::Span<const uint8_t>> Resolve(uint32_t map_id, uint32_t map_generation,
                                                    uint64_t map_offset,
                                                    uint64_t payload_len) const;

  size_t size() const { return regions_.size(); }

 private:
  struct Region {
    const uint8_t* data;
    uint64_t length;
  };
  void UnmapAll();

  std::map<std::pair<uint32_t, uint32_t>, Region> regions_;
};

class MappingReceiver {
 public:
  // Owns the receive handle of one link's mapping-control socket.
  explicit MappingReceiver(UniqueFd control_fd) : control_fd_(std::move(control_fd)) {}

  // Reads the messages queued on the socket (at most kMaxMessagesPerPoll, so
  // a peer that sends without pause cannot hold us) and attaches each. A
  // well-formed message whose region cannot be mapped is skipped and
  // counted. The first receive error makes the receiver terminal: Poll
  // returns that error now and on every later call, without reading again.
  absl::Status Poll();

  // Poll(), then one lookup (MappingTable::Resolve). A terminal receiver
  // resolves nothing: it returns its terminal error.
  absl::StatusOr<absl::Span<const uint8_t>> Resolve(uint32_t map_id, uint32_t map_generation,
                                                    uint64_t map_offset, uint64_t payload_len);

  const MappingTable& table() const { return table_; }
  // Well-formed messages whose region could not be mapped.
  uint64_t skipped() const { return skipped_; }

  static constexpr int kMaxMessagesPerPoll = 256;

 private:
  UniqueFd control_fd_;
  MappingTable table_;
  absl::Status terminal_;  // OK until the channel ends
  uint64_t skipped_ = 0;
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_MAPPING_TABLE_H_
