#include "shm/shm_error.h"

#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace shmhub::shm {
namespace {

constexpr absl::string_view kPayloadUrl = "type.shmhub.dev/shm.ShmErrc";

// The canonical code tells callers what to do; the ShmErrc says what failed.
// Corrupt shared memory is DATA_LOSS: the peer that owns it is broken.
absl::StatusCode CanonicalCode(ShmErrc errc) {
  switch (errc) {
    case ShmErrc::kNone:
      break;
    case ShmErrc::kIo:
      return absl::StatusCode::kInternal;
    case ShmErrc::kSymlink:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kNotRegularFile:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kLiveSegment:
      return absl::StatusCode::kAlreadyExists;
    case ShmErrc::kFileTooSmall:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kNotInitialised:
      return absl::StatusCode::kUnavailable;
    case ShmErrc::kBadMagic:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadVersion:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadHeaderSize:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadMaxGuests:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadRingCapacity:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadClassCount:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadPeerTableOffset:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kClassTableOutOfBounds:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadSlotClass:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kLayoutOverflow:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kNonCanonicalLayout:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadCurrentSize:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kFileShorterThanSegment:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadRingOffset:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kRingCapacityMismatch:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBadConfig:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kInvalidPeerId:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kWrongState:
      return absl::StatusCode::kFailedPrecondition;
    case ShmErrc::kInvalidState:
      return absl::StatusCode::kFailedPrecondition;
    case ShmErrc::kStaleEpoch:
      return absl::StatusCode::kFailedPrecondition;
    case ShmErrc::kNoFreeEntry:
      return absl::StatusCode::kResourceExhausted;
    case ShmErrc::kRingFull:
      return absl::StatusCode::kResourceExhausted;
    case ShmErrc::kRingCorrupt:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kRingStalled:
      return absl::StatusCode::kUnavailable;
    case ShmErrc::kRingOutOfRange:
      return absl::StatusCode::kOutOfRange;
    case ShmErrc::kFrameIncomplete:
      return absl::StatusCode::kUnavailable;
    case ShmErrc::kFrameBadLength:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kFrameBothFlags:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kFrameShortSlotRef:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kFrameShortMmapRef:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kFrameBadInlineLen:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kPayloadTooLarge:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kSlotBadLength:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kNoClass:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kPoolExhausted:
      return absl::StatusCode::kResourceExhausted;
    case ShmErrc::kDoubleFree:
      return absl::StatusCode::kFailedPrecondition;
    case ShmErrc::kBadSlotRef:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kPoolCorrupt:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kMappingInvalidLength:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kMappingPeerClosed:
      return absl::StatusCode::kUnavailable;
    case ShmErrc::kMappingControlTruncated:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kMappingNoFd:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kMappingUnknownKey:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kMappingOverflow:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kMappingOutOfBounds:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kPeerDead:
      return absl::StatusCode::kUnavailable;
    case ShmErrc::kPeerClosed:
      return absl::StatusCode::kUnavailable;
    case ShmErrc::kBootstrapTruncated:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBootstrapInvalidMagic:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBootstrapUnknownStatus:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBootstrapLengthMismatch:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBootstrapBadPeerId:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBootstrapPayloadTooLarge:
      return absl::StatusCode::kInvalidArgument;
    case ShmErrc::kBootstrapBadFdCount:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBootstrapControlTruncated:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kBootstrapBadFields:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kHostControlClosed:
      return absl::StatusCode::kUnavailable;
    case ShmErrc::kHostRecordTruncated:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kHostRecordUnknownType:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kHostRecordWrongSender:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kHostRecordBadField:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kHostRecordBadFdCount:
      return absl::StatusCode::kDataLoss;
    case ShmErrc::kHostRecordControlTruncated:
      return absl::StatusCode::kDataLoss;
  }
  return absl::StatusCode::kUnknown;
}

}  // namespace

absl::Status ShmError(ShmErrc errc, absl::string_view message) {
  absl::Status status(CanonicalCode(errc), message);
  status.SetPayload(kPayloadUrl,
                    absl::Cord(absl::StrCat(static_cast<int>(errc))));
  return status;
}

ShmErrc ShmErrcOf(const absl::Status& status) {
  if (status.ok()) return ShmErrc::kNone;
  auto payload = status.GetPayload(kPayloadUrl);
  int value = 0;
  if (!payload.has_value() ||
      !absl::SimpleAtoi(std::string(*payload), &value)) {
    return ShmErrc::kNone;
  }
  return static_cast<ShmErrc>(value);
}

absl::string_view ShmErrcName(ShmErrc errc) {
  switch (errc) {
    case ShmErrc::kNone:
      return "kNone";
    case ShmErrc::kIo:
      return "kIo";
    case ShmErrc::kSymlink:
      return "kSymlink";
    case ShmErrc::kNotRegularFile:
      return "kNotRegularFile";
    case ShmErrc::kLiveSegment:
      return "kLiveSegment";
    case ShmErrc::kFileTooSmall:
      return "kFileTooSmall";
    case ShmErrc::kNotInitialised:
      return "kNotInitialised";
    case ShmErrc::kBadMagic:
      return "kBadMagic";
    case ShmErrc::kBadVersion:
      return "kBadVersion";
    case ShmErrc::kBadHeaderSize:
      return "kBadHeaderSize";
    case ShmErrc::kBadMaxGuests:
      return "kBadMaxGuests";
    case ShmErrc::kBadRingCapacity:
      return "kBadRingCapacity";
    case ShmErrc::kBadClassCount:
      return "kBadClassCount";
    case ShmErrc::kBadPeerTableOffset:
      return "kBadPeerTableOffset";
    case ShmErrc::kClassTableOutOfBounds:
      return "kClassTableOutOfBounds";
    case ShmErrc::kBadSlotClass:
      return "kBadSlotClass";
    case ShmErrc::kLayoutOverflow:
      return "kLayoutOverflow";
    case ShmErrc::kNonCanonicalLayout:
      return "kNonCanonicalLayout";
    case ShmErrc::kBadCurrentSize:
      return "kBadCurrentSize";
    case ShmErrc::kFileShorterThanSegment:
      return "kFileShorterThanSegment";
    case ShmErrc::kBadRingOffset:
      return "kBadRingOffset";
    case ShmErrc::kRingCapacityMismatch:
      return "kRingCapacityMismatch";
    case ShmErrc::kBadConfig:
      return "kBadConfig";
    case ShmErrc::kInvalidPeerId:
      return "kInvalidPeerId";
    case ShmErrc::kWrongState:
      return "kWrongState";
    case ShmErrc::kInvalidState:
      return "kInvalidState";
    case ShmErrc::kStaleEpoch:
      return "kStaleEpoch";
    case ShmErrc::kNoFreeEntry:
      return "kNoFreeEntry";
    case ShmErrc::kRingFull:
      return "kRingFull";
    case ShmErrc::kRingCorrupt:
      return "kRingCorrupt";
    case ShmErrc::kRingStalled:
      return "kRingStalled";
    case ShmErrc::kRingOutOfRange:
      return "kRingOutOfRange";
    case ShmErrc::kFrameIncomplete:
      return "kFrameIncomplete";
    case ShmErrc::kFrameBadLength:
      return "kFrameBadLength";
    case ShmErrc::kFrameBothFlags:
      return "kFrameBothFlags";
    case ShmErrc::kFrameShortSlotRef:
      return "kFrameShortSlotRef";
    case ShmErrc::kFrameShortMmapRef:
      return "kFrameShortMmapRef";
    case ShmErrc::kFrameBadInlineLen:
      return "kFrameBadInlineLen";
    case ShmErrc::kPayloadTooLarge:
      return "kPayloadTooLarge";
    case ShmErrc::kSlotBadLength:
      return "kSlotBadLength";
    case ShmErrc::kNoClass:
      return "kNoClass";
    case ShmErrc::kPoolExhausted:
      return "kPoolExhausted";
    case ShmErrc::kDoubleFree:
      return "kDoubleFree";
    case ShmErrc::kBadSlotRef:
      return "kBadSlotRef";
    case ShmErrc::kPoolCorrupt:
      return "kPoolCorrupt";
    case ShmErrc::kMappingInvalidLength:
      return "kMappingInvalidLength";
    case ShmErrc::kMappingPeerClosed:
      return "kMappingPeerClosed";
    case ShmErrc::kMappingControlTruncated:
      return "kMappingControlTruncated";
    case ShmErrc::kMappingNoFd:
      return "kMappingNoFd";
    case ShmErrc::kMappingUnknownKey:
      return "kMappingUnknownKey";
    case ShmErrc::kMappingOverflow:
      return "kMappingOverflow";
    case ShmErrc::kMappingOutOfBounds:
      return "kMappingOutOfBounds";
    case ShmErrc::kPeerDead:
      return "kPeerDead";
    case ShmErrc::kPeerClosed:
      return "kPeerClosed";
    case ShmErrc::kBootstrapTruncated:
      return "kBootstrapTruncated";
    case ShmErrc::kBootstrapInvalidMagic:
      return "kBootstrapInvalidMagic";
    case ShmErrc::kBootstrapUnknownStatus:
      return "kBootstrapUnknownStatus";
    case ShmErrc::kBootstrapLengthMismatch:
      return "kBootstrapLengthMismatch";
    case ShmErrc::kBootstrapBadPeerId:
      return "kBootstrapBadPeerId";
    case ShmErrc::kBootstrapPayloadTooLarge:
      return "kBootstrapPayloadTooLarge";
    case ShmErrc::kBootstrapBadFdCount:
      return "kBootstrapBadFdCount";
    case ShmErrc::kBootstrapControlTruncated:
      return "kBootstrapControlTruncated";
    case ShmErrc::kBootstrapBadFields:
      return "kBootstrapBadFields";
    case ShmErrc::kHostControlClosed:
      return "kHostControlClosed";
    case ShmErrc::kHostRecordTruncated:
      return "kHostRecordTruncated";
    case ShmErrc::kHostRecordUnknownType:
      return "kHostRecordUnknownType";
    case ShmErrc::kHostRecordWrongSender:
      return "kHostRecordWrongSender";
    case ShmErrc::kHostRecordBadField:
      return "kHostRecordBadField";
    case ShmErrc::kHostRecordBadFdCount:
      return "kHostRecordBadFdCount";
    case ShmErrc::kHostRecordControlTruncated:
      return "kHostRecordControlTruncated";
  }
  return "kUnknownShmErrc";
}

absl::Status ShmIoError(absl::string_view what, int err) {
  return ShmError(ShmErrc::kIo, absl::StrCat(what, ": ", std::strerror(err)));
}

absl::Status Annotate(const absl::Status& status, absl::string_view what) {
  absl::Status annotated(status.code(), absl::StrCat(what, ": ", status.message()));
  status.ForEachPayload([&annotated](absl::string_view type_url, const absl::Cord& payload) {
    annotated.SetPayload(type_url, payload);
  });
  return annotated;
}

}  // namespace shmhub::shm
