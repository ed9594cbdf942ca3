#include "shm/mapping_table.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <optional>

#include "absl/strings/str_cat.h"
#include "shm/shm_error.h"

namespace shmhub::shm {

MappingTable::~MappingTable() { UnmapAll(); }

MappingTable::MappingTable(MappingTable&& other) noexcept : regions_(std::move(other.regions_)) {
  other.regions_.clear();
}

MappingTable& MappingTable::operator=(MappingTable&& other) noexcept {
  if (this != &other) {
    UnmapAll();
    regions_ = std::move(other.regions_);
    other.regions_.clear();
  }
  return *this;
}

void MappingTable::UnmapAll() {
  for (auto& [key, region] : regions_) {
    ::munmap(const_cast<uint8_t*>(region.data), region.length);
  }
  regions_.clear();
}

absl::StatusOr<AttachResult> MappingTable::Attach(const MappingControlMessage& message,
                                                  UniqueFd region_fd) {
  const auto key = std::make_pair(message.map_id, message.map_generation);
  if (regions_.count(key) != 0) return AttachResult::kDuplicate;
  struct stat st;
  if (::fstat(region_fd.get(), &st) != 0) return ShmIoError("fstat(mapping region)", errno);
  // Mapping past the end of the file would turn the first read there into
  // SIGBUS; refuse what we can see now.
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) < message.mapping_length) {
    return ShmError(
        ShmErrc::kMappingOutOfBounds,
        absl::StrCat("mapping (", message.map_id, ", ", message.map_generation, "): file of ",
                     st.st_size, " bytes < mapping_length ", message.mapping_length));
  }
  void* data = ::mmap(nullptr, message.mapping_length, PROT_READ, MAP_SHARED, region_fd.get(), 0);
  if (data == MAP_FAILED) {
    return ShmIoError(absl::StrCat("mmap(mapping region of ", message.mapping_length, " bytes)"),
                      errno);
  }
  regions_.emplace(key, Region{static_cast<const uint8_t*>(data), message.mapping_length});
  return AttachResult::kAttached;
}

absl::StatusOr<absl::Span<const uint8_t>> MappingTable::Resolve(uint32_t map_id,
                                                                uint32_t map_generation,
                                                                uint64_t map_offset,
                                                                uint64_t payload_len) const {
  const auto it = regions_.find(std::make_pair(map_id, map_generation));
  if (it == regions_.end()) {
    return ShmError(ShmErrc::kMappingUnknownKey,
                    absl::StrCat("unknown mapping (", map_id, ", ", map_generation, ")"));
  }
  uint64_t end = 0;
  if (__builtin_add_overflow(map_offset, payload_len, &end)) {
    return ShmError(
        ShmErrc::kMappingOverflow,
        absl::StrCat("map_offset ", map_offset, " + payload_len ", payload_len, " overflows"));
  }
  const Region& region = it->second;
  if (end > region.length) {
    return ShmError(
        ShmErrc::kMappingOutOfBounds,
        absl::StrCat("bytes [", map_offset, ", ", end, ") past mapping_length ", region.length));
  }
  return absl::MakeConstSpan(region.data + map_offset, static_cast<size_t>(payload_len));
}

absl::Status MappingReceiver::Poll() {
  if (!terminal_.ok()) return terminal_;
  for (int i = 0; i < kMaxMessagesPerPoll; ++i) {
    absl::StatusOr<std::optional<ReceivedMapping>> received =
        ReceiveMappingControl(control_fd_.get());
    if (!received.ok()) {
      terminal_ = received.status();
      return terminal_;
    }
    if (!received->has_value()) break;
    ReceivedMapping& mapping = **received;
    if (!table_.Attach(mapping.message, std::move(mapping.region_fd)).ok()) ++skipped_;
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const uint8_t>> MappingReceiver::Resolve(uint32_t map_id,
                                                                   uint32_t map_generation,
                                                                   uint64_t map_offset,
                                                                   uint64_t payload_len) {
  if (absl::Status polled = Poll(); !polled.ok()) return polled;
  return table_.Resolve(map_id, map_generation, map_offset, payload_len);
}

}  // namespace shmhub::shm
