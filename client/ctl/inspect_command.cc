#include "client/ctl/inspect_command.h"

#include <string>

#include "absl/flags/flag.h"
#include "client/ctl/ctl_flags.h"
#include "client/ctl/inspection_printer.h"
#include "client/ctl/segment_inspector.h"

namespace shmhub::ctl {

int RunInspect(const Invocation& invocation) {
  absl::StatusOr<SegmentInspection> inspection = InspectSegmentFile(invocation.args[0]);
  if (!inspection.ok()) return ReportFailure(invocation, inspection.status());
  const bool all = absl::GetFlag(FLAGS_all);
  if (absl::GetFlag(FLAGS_json)) {
    for (const std::string& line : InspectionJsonLines(*inspection, all)) {
      invocation.out << line << "\n";
    }
  } else {
    invocation.out << InspectionText(*inspection, all);
  }
  return kExitOk;
}

}  // namespace shmhub::ctl
