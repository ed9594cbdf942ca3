#include "shm/shm_error.h"

#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace shmhub::shm {
namespace {

constexpr absl::string_view kPayloadUrl = "type.shmhub.dev/shm.ShmErrc";

absl::StatusCode CanonicalCode(ShmErrc errc) {
  switch (errc) {
    case ShmErrc::kNone:
      break;
#define SHMHUB_SHM_ERRC_CODE(name, code) \
  case ShmErrc::name:                    \
    return absl::StatusCode::code;
    SHMHUB_SHM_ERRCS(SHMHUB_SHM_ERRC_CODE)
#undef SHMHUB_SHM_ERRC_CODE
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
#define SHMHUB_SHM_ERRC_NAME(name, code) \
  case ShmErrc::name:                    \
    return #name;
    SHMHUB_SHM_ERRCS(SHMHUB_SHM_ERRC_NAME)
#undef SHMHUB_SHM_ERRC_NAME
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
