#include "bench/harness/two_process.h"

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace shmhub::bench {
namespace {

constexpr char kReady[] = "ready";
constexpr char kGo[] = "go";
constexpr char kDone[] = "done";
constexpr char kBye[] = "bye";
constexpr char kErrorPrefix[] = "error: ";

// A child's report: OK for `expected`, the child's error for "error: ...".
absl::Status Expect(const absl::StatusOr<std::string>& message, const char* expected) {
  if (!message.ok()) return message.status();
  if (*message == expected) return absl::OkStatus();
  if (absl::StartsWith(*message, kErrorPrefix)) {
    return absl::AbortedError(absl::StrCat("child: ", message->substr(sizeof(kErrorPrefix) - 1)));
  }
  return absl::InternalError(absl::StrCat("child said '", *message, "', expected '", expected, "'"));
}

}  // namespace

absl::Status ChildReady(const ControlEnd& control, const absl::Status& setup,
                        shm::Deadline deadline) {
  if (!setup.ok()) {
    // Best effort: the parent learns why, or times out if even this fails.
    control.Send(absl::StrCat(kErrorPrefix, setup.ToString())).IgnoreError();
    return setup;
  }
  if (absl::Status s = control.Send(kReady); !s.ok()) return s;
  absl::StatusOr<std::string> go = control.Receive(deadline);
  if (!go.ok()) return go.status();
  if (*go != kGo) return absl::CancelledError(absl::StrCat("parent said '", *go, "'"));
  return absl::OkStatus();
}

int ChildFinish(const ControlEnd& control, const absl::Status& outcome,
                shm::Deadline deadline) {
  if (!outcome.ok()) {
    control.Send(absl::StrCat(kErrorPrefix, outcome.ToString())).IgnoreError();
    return 1;
  }
  if (!control.Send(kDone).ok()) return 1;
  absl::StatusOr<std::string> bye = control.Receive(deadline);
  return bye.ok() && *bye == kBye ? 0 : 1;
}

absl::Status ParentAwaitReady(const ControlEnd& control, shm::Deadline deadline) {
  return Expect(control.Receive(deadline), kReady);
}

absl::Status ParentGo(const ControlEnd& control) { return control.Send(kGo); }

absl::Status ParentAwaitDone(const ControlEnd& control, ForkedChild& child,
                             shm::Deadline deadline) {
  if (absl::Status s = Expect(control.Receive(deadline), kDone); !s.ok()) return s;
  if (absl::Status s = control.Send(kBye); !s.ok()) return s;
  absl::StatusOr<int> code = child.WaitExit(deadline);
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("child exited with ", *code));
  return absl::OkStatus();
}

}  // namespace shmhub::bench
