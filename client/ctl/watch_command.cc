#include "client/ctl/watch_command.h"

#include <signal.h>
#include <time.h>

#include <memory>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/ctl/ctl_flags.h"
#include "client/ctl/display_format.h"
#include "client/ctl/json_line.h"
#include "client/ctl/peer_printer.h"
#include "client/hub/event_watcher.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace shmhub::ctl {
namespace {

// How often the main thread checks whether the watcher gave up.
constexpr absl::Duration kSignalPoll = absl::Milliseconds(100);

std::string EventText(const v1::PeerEvent& event) {
  std::string line = absl::StrCat(event.sequence(), " ", HumanTimestamp(event.time()), " ",
                                  EventKindLabel(event.kind()), " peer_id=", event.peer_id(),
                                  " epoch=", event.epoch());
  if (event.detector() != v1::DETECTOR_UNSPECIFIED) {
    absl::StrAppend(&line, " detector=", DetectorLabel(event.detector()));
  }
  if (event.has_heartbeat_age()) {
    absl::StrAppend(&line, " heartbeat_age=", HumanDuration(event.heartbeat_age()));
  }
  if (event.has_recovery()) {
    const v1::RecoveryReport& r = event.recovery();
    absl::StrAppend(&line, " ring_entries_scanned=", r.ring_entries_scanned(),
                    " slots_freed_from_ring=", r.slots_freed_from_ring(),
                    " slots_reclaimed_by_owner=", r.slots_reclaimed_by_owner(),
                    " problems=", r.problems());
  }
  if (!event.owner().empty()) absl::StrAppend(&line, " owner=", event.owner());
  if (!event.labels().empty()) absl::StrAppend(&line, " labels=", LabelsText(event.labels()));
  if (!event.reason().empty()) absl::StrAppend(&line, " reason=\"", event.reason(), "\"");
  return line + "\n";
}

}  // namespace

std::string WatchResponseText(const v1::WatchEventsResponse& response) {
  switch (response.message_case()) {
    case v1::WatchEventsResponse::kEvent:
      return EventText(response.event());
    case v1::WatchEventsResponse::kSnapshot: {
      // Empty slots are left out, as in `list`; --json shows them all.
      const v1::Snapshot& snapshot = response.snapshot();
      google::protobuf::RepeatedPtrField<v1::Peer> occupied;
      for (const v1::Peer& peer : snapshot.peers()) {
        if (peer.state() != v1::PEER_STATE_EMPTY) *occupied.Add() = peer;
      }
      std::string text = absl::StrCat("snapshot sequence=", snapshot.sequence(),
                                      " hub_instance_id=", snapshot.hub_instance_id(),
                                      " peers=", snapshot.peers_size(),
                                      " occupied=", occupied.size(), "\n");
      if (!occupied.empty()) text += PeersTable(occupied);
      return text;
    }
    case v1::WatchEventsResponse::kResync:
      return absl::StrCat("RESYNC reason=", ResyncReasonLabel(response.resync().reason()),
                          " oldest_available_sequence=",
                          response.resync().oldest_available_sequence(), ": ",
                          response.resync().message(), "\n");
    case v1::WatchEventsResponse::kProgress:
    case v1::WatchEventsResponse::MESSAGE_NOT_SET:
      return "";
  }
  return "";
}

int RunWatch(const Invocation& invocation) {
  client::EventWatcherOptions options;
  options.snapshot_first = absl::GetFlag(FLAGS_snapshot);
  options.resume_after_sequence = absl::GetFlag(FLAGS_resume_after);
  options.hub_instance_id = absl::GetFlag(FLAGS_instance);
  const bool json = absl::GetFlag(FLAGS_json);
  const bool exit_on_shutdown = absl::GetFlag(FLAGS_exit_on_shutdown);

  // Blocked before gRPC starts its threads, so only sigtimedwait below
  // receives them and the watcher can be stopped cleanly.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Callbacks run on the watcher thread; the main thread writes only after
  // Stop() has joined it.
  std::unique_ptr<client::EventWatcher> watcher;
  auto on_response = [&](const v1::WatchEventsResponse& response) {
    invocation.out << (json ? ProtoJsonLine(response) + "\n" : WatchResponseText(response));
    invocation.out.flush();
    if (exit_on_shutdown && response.has_event() &&
        response.event().kind() == v1::EVENT_KIND_HOST_SHUTDOWN) {
      watcher->RequestStop();
    }
  };
  auto on_stream_end = [&](const absl::Status& status, absl::Duration retry_in) {
    const std::string why = status.ok() ? "the daemon closed the stream"
                                        : absl::StrCat(absl::StatusCodeToString(status.code()),
                                                       ": ", status.message());
    if (retry_in == absl::InfiniteDuration()) {
      invocation.err << "shmhubctl: watch refused: " << why << "\n";
    } else {
      invocation.err << "shmhubctl: watch stream ended (" << why << "); reconnecting in "
                     << HumanDuration(retry_in) << "\n";
    }
    invocation.err.flush();
  };
  watcher = std::make_unique<client::EventWatcher>(
      client::MakeHubChannel(absl::GetFlag(FLAGS_hub)), options, on_response, on_stream_end);
  watcher->Start();

  const timespec poll = absl::ToTimespec(kSignalPoll);
  while (!watcher->Done()) {
    if (sigtimedwait(&signals, nullptr, &poll) > 0) break;
  }
  watcher->Stop();
  const absl::Status final_status = watcher->final_status();
  if (!final_status.ok()) {
    invocation.err << "shmhubctl: " << absl::StatusCodeToString(final_status.code()) << ": "
                   << final_status.message() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace shmhub::ctl
