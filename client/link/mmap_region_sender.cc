#include "client/link/mmap_region_sender.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "shm/mapping_control.h"
#include "shm/shm_error.h"

namespace shmhub::client {
namespace {

// Placements start on a cache line: the copy in and the reader's accesses
// then never share a line with a neighbouring payload.
constexpr uint64_t kPlacementAlign = 64;

uint64_t RoundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

}  // namespace

MmapRegionSender::MmapRegionSender(shm::UniqueFd control_fd)
    : control_fd_(std::move(control_fd)) {}

MmapRegionSender::~MmapRegionSender() {
  for (const Region& region : regions_) ::munmap(region.base, region.size);
}

void MmapRegionSender::Retire(uint64_t consumer_position) {
  while (!in_flight_.empty() && in_flight_.front().entry_end <= consumer_position) {
    --regions_[in_flight_.front().region].in_flight;
    in_flight_.pop_front();
  }
}

absl::StatusOr<size_t> MmapRegionSender::MakeRegion(uint64_t min_bytes) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t size = RoundUp(std::max(kMinRegionBytes, min_bytes), page);
  shm::UniqueFd fd(::memfd_create("shmhub-link-region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return shm::ShmIoError("memfd_create(mmap region)", errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return shm::ShmIoError("ftruncate(mmap region)", errno);
  }
  // A receiver maps mapping_length bytes; a file that shrank later would
  // turn its reads into SIGBUS. Sealing the size rules that out for good.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return shm::ShmIoError("fcntl(F_ADD_SEALS, mmap region)", errno);
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) return shm::ShmIoError("mmap(mmap region)", errno);
  const uint32_t map_id = next_map_id_;
  // §9.2/§9.4: the fd goes out once, before any entry names the region.
  absl::Status sent = shm::SendMappingControl(
      control_fd_.get(), shm::MappingControlMessage{map_id, 0, size}, fd.get());
  if (!sent.ok()) {
    ::munmap(base, size);
    return sent;
  }
  ++next_map_id_;
  regions_.push_back(Region{static_cast<uint8_t*>(base), size, 0, 0, map_id});
  return regions_.size() - 1;
}

MmapRegionSender::Placement MmapRegionSender::PlaceIn(size_t index, uint32_t len) {
  Region& region = regions_[index];
  const uint64_t offset = region.used;
  region.used = RoundUp(offset + len, kPlacementAlign);
  current_ = index;
  return Placement{index, region.map_id, offset,
                   absl::MakeSpan(region.base + offset, static_cast<size_t>(len))};
}

absl::StatusOr<std::optional<MmapRegionSender::Placement>> MmapRegionSender::Place(
    uint32_t len, uint64_t consumer_position) {
  Retire(consumer_position);
  // Continue in the current region while it has room.
  if (current_ < regions_.size()) {
    Region& region = regions_[current_];
    if (region.in_flight == 0) region.used = 0;
    if (region.size - region.used >= len) return PlaceIn(current_, len);
  }
  // Then any idle region large enough, from the start.
  bool some_region_fits = false;
  for (size_t i = 0; i < regions_.size(); ++i) {
    Region& region = regions_[i];
    if (region.size < len) continue;
    some_region_fits = true;
    if (region.in_flight == 0) {
      region.used = 0;
      return PlaceIn(i, len);
    }
  }
  if (some_region_fits && regions_.size() >= kMaxRegions) return std::nullopt;
  absl::StatusOr<size_t> made = MakeRegion(len);
  if (!made.ok()) return made.status();
  return PlaceIn(*made, len);
}

void MmapRegionSender::Track(const Placement& placement, uint64_t entry_end) {
  ++regions_[placement.region].in_flight;
  in_flight_.push_back(InFlight{entry_end, placement.region});
}

}  // namespace shmhub::client
