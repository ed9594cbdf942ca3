// `shmhubctl watch`: follows the hub's event stream with an EventWatcher
// (resuming after reconnects) until Ctrl-C/SIGTERM, printing one line per
// event as it arrives (flushed, so a pipe sees it at once).
//
// Text: "SEQ TIME KIND peer_id=N epoch=E [detail...]" per event; a snapshot
// as a "snapshot ..." line followed by a table of its occupied slots; a
// resync as a
// "RESYNC ..." line; progress messages are not shown. --json: every
// WatchEventsResponse (progress included) as one JSON line, e.g.
// {"event":{"sequence":"7","kind":"EVENT_KIND_CRASHED",...}}.
// Reconnects are reported on stderr.
//
// Exit status: 0 after SIGINT/SIGTERM, or after HOST_SHUTDOWN with
// --exit_on_shutdown; 1 when the daemon refuses the watch for good
// (e.g. INVALID_ARGUMENT for a bad --resume_after/--instance pair).
#ifndef SHMHUB_CLIENT_CTL_WATCH_COMMAND_H_
#define SHMHUB_CLIENT_CTL_WATCH_COMMAND_H_

#include <string>

#include "client/ctl/command.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::ctl {

int RunWatch(const Invocation& invocation);

// The text form of one response; empty for progress messages.
std::string WatchResponseText(const v1::WatchEventsResponse& response);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_WATCH_COMMAND_H_
