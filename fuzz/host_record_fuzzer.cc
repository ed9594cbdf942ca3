// Fuzzes the host-control codec (shm/host_control.h, docs/host-protocol.md):
// shmhubd and the data-plane host application each decode whatever 16 bytes
// the other side writes, so every byte is hostile. For any input, decoded
// as sent by the daemon and as sent by the host, the target proves that
//   - the decoder accepts exactly the records the header's table allows
//     for that sender, and refuses every other input with the error the
//     header's check order names (truncated, unknown type, wrong sender,
//     bad field);
//   - an accepted record holds the fields the bytes carry, encodes back to
//     the very same 16 bytes, is what the codec's builder for its type
//     makes, and carries the descriptor count its type allows;
//   - the same record one byte shorter or longer is refused as truncated;
// and that IsHostRequest recognises exactly the inputs that start "SHH1".
// Seeds: host_record_seeds.cc, run by the build.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/host_control.h"
#include "shm/shm_error.h"

namespace {

using shmhub::shm::HostControlSender;
using shmhub::shm::HostRecord;
using shmhub::shm::HostRecordType;
using shmhub::shm::kHostRecordSize;
using shmhub::shm::ShmErrc;

void Check(bool ok) {
  if (!ok) std::abort();
}

// Read byte by byte rather than with the codec's GetLe, so the oracle below
// shares no code with the decoder it judges.
uint32_t Le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// The outcome the header promises for `bytes` from `sender`, written from
// its table with literal numbers rather than the codec's constants, so a
// constant that drifts from the documented format is caught too.
ShmErrc Expected(HostControlSender sender, absl::Span<const uint8_t> bytes) {
  if (bytes.size() != 16) return ShmErrc::kHostRecordTruncated;
  const uint32_t type = Le32(bytes.data());
  const uint32_t peer_id = Le32(bytes.data() + 4);
  const uint32_t epoch = Le32(bytes.data() + 8);
  const uint32_t arg = Le32(bytes.data() + 12);
  if (type < 1 || type > 6) return ShmErrc::kHostRecordUnknownType;
  const HostControlSender allowed =
      type == 5 || type == 6 ? HostControlSender::kHost : HostControlSender::kDaemon;
  if (sender != allowed) return ShmErrc::kHostRecordWrongSender;
  const bool names_peer = peer_id >= 1 && peer_id <= 255;
  bool fields_ok = false;
  switch (type) {
    case 1:
      fields_ok = peer_id == 0 && epoch == 0 && arg == 1;
      break;
    case 2:
      fields_ok = peer_id == 0 && epoch == 0 && (arg == 1 || arg == 2);
      break;
    case 3:
      fields_ok = names_peer && (arg == 0 || arg == 2);
      break;
    case 4:
      fields_ok = names_peer && arg >= 1 && arg <= 4;
      break;
    case 5:
      fields_ok = names_peer && arg == 0;
      break;
    case 6:
      fields_ok = names_peer && (arg == 0 || arg == 2);
      break;
  }
  return fields_ok ? ShmErrc::kNone : ShmErrc::kHostRecordBadField;
}

// The record the codec's own builder makes for `record`'s type and fields:
// the daemon and the host build every record they send with these, so each
// valid record must be one they can produce.
HostRecord Rebuilt(const HostRecord& record) {
  switch (record.type) {
    case HostRecordType::kRegistered:
      return shmhub::shm::RegisteredRecord();
    case HostRecordType::kRefused:
      return shmhub::shm::RefusedRecord(static_cast<shmhub::shm::HostRefusal>(record.arg));
    case HostRecordType::kPeerAttached:
      return shmhub::shm::PeerAttachedRecord(record.occupancy(), record.arg);
    case HostRecordType::kPeerRecovering:
      return shmhub::shm::PeerRecoveringRecord(
          record.occupancy(), static_cast<shmhub::shm::PeerDeparture>(record.arg));
    case HostRecordType::kRecoveryReady:
      return shmhub::shm::RecoveryReadyRecord(record.occupancy());
    case HostRecordType::kPeerHandback:
      return shmhub::shm::PeerHandbackRecord(record.occupancy(), record.arg);
  }
  // Only accepted records get here, so another type is a decoder bug.
  std::abort();
}

// The descriptors the table gives each accepted record.
size_t TableFdCount(const HostRecord& record) {
  if (record.type == HostRecordType::kRegistered) return 1;
  if (record.type == HostRecordType::kPeerAttached) return record.arg;
  if (record.type == HostRecordType::kPeerHandback) return record.arg;
  return 0;
}

void CheckAccepted(HostControlSender sender, absl::Span<const uint8_t> bytes,
                   const HostRecord& record) {
  Check(static_cast<uint32_t>(record.type) == Le32(bytes.data()));
  Check(record.peer_id == Le32(bytes.data() + 4));
  Check(record.epoch == Le32(bytes.data() + 8));
  Check(record.arg == Le32(bytes.data() + 12));

  const std::array<uint8_t, kHostRecordSize> encoded = shmhub::shm::EncodeHostRecord(record);
  Check(std::equal(encoded.begin(), encoded.end(), bytes.begin(), bytes.end()));
  Check(Rebuilt(record) == record);

  // SendHostRecordSome sizes its control buffer for kPeerAttachedFdCount
  // descriptors: a valid record asking for more would overrun it.
  const size_t fd_count = shmhub::shm::HostRecordFdCount(record);
  Check(fd_count == TableFdCount(record));
  Check(fd_count <= shmhub::shm::kPeerAttachedFdCount);

  // A stream reader that miscounted by one byte must not get a record.
  std::vector<uint8_t> longer(bytes.begin(), bytes.end());
  longer.push_back(0);
  for (absl::Span<const uint8_t> wrong :
       {bytes.first(kHostRecordSize - 1), absl::Span<const uint8_t>(longer)}) {
    Check(shmhub::shm::ShmErrcOf(shmhub::shm::DecodeHostRecord(sender, wrong).status()) ==
          ShmErrc::kHostRecordTruncated);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::Span<const uint8_t> bytes(data, size);
  int accepted_by = 0;
  for (HostControlSender sender : {HostControlSender::kDaemon, HostControlSender::kHost}) {
    const absl::StatusOr<HostRecord> record = shmhub::shm::DecodeHostRecord(sender, bytes);
    // Comparing codes, not just ok(), also proves the documented check order:
    // each refusal names the first rule the bytes break.
    Check(shmhub::shm::ShmErrcOf(record.status()) == Expected(sender, bytes));
    if (!record.ok()) continue;
    ++accepted_by;
    CheckAccepted(sender, bytes, *record);
  }
  // Each type has one sender, so no bytes are valid from both sides.
  Check(accepted_by <= 1);

  const bool starts_shh1 =
      size >= 4 && data[0] == 'S' && data[1] == 'H' && data[2] == 'H' && data[3] == '1';
  Check(shmhub::shm::IsHostRequest(bytes) == starts_shh1);
  return 0;
}
