// `shmhubctl inspect PATH`: the offline dump of a segment file (see
// segment_inspector.h and inspection_printer.h). Talks to no daemon.
#ifndef SHMHUB_CLIENT_CTL_INSPECT_COMMAND_H_
#define SHMHUB_CLIENT_CTL_INSPECT_COMMAND_H_

#include "client/ctl/command.h"

namespace shmhub::ctl {

// args: PATH. --all lists Empty slots too; --json prints JSON lines.
// Exit 1 when the file cannot be attached (missing, not a segment,
// corrupt), with the validation error.
int RunInspect(const Invocation& invocation);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_INSPECT_COMMAND_H_
