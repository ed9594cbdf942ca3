// EventWatcher: follows shmhubd's event stream (PeerHub.WatchEvents) across
// disconnects and daemon restarts, without ever hiding a gap.
//
// A watcher runs one WatchEvents stream at a time on its own thread and
// hands every response (event, snapshot, progress, resync) to on_response,
// in stream order. It remembers its position: the highest sequence number
// and the hub_instance_id of the last event, snapshot or progress message.
// Each stream waits for the channel to connect (gRPC wait_for_ready), so a
// watcher started before the daemon, or whose daemon is restarting, waits
// quietly and connects as soon as the daemon listens; nothing is reported
// while it waits. When a stream breaks (daemon restart, network,
// HOST_SHUTDOWN ending the stream, a refusal such as RESOURCE_EXHAUSTED)
// it waits a bounded, doubling backoff and opens a new stream with
// resume_after_sequence = that sequence and the same hub_instance_id, so the
// daemon delivers exactly the events it missed — or, when those are gone
// (pruned history, another daemon instance), a Resync followed by a
// Snapshot, which reach on_response like everything else. The watcher never
// drops or invents messages; what to make of a Resync is the caller's call.
//
// Before the first message arrives there is no position. The first stream
// uses the options as given; if it breaks before any message, the next
// attempt uses the same request again (events between the two attempts are
// lost when no resume point was given; ask for snapshot_first or give a
// resume point when that matters).
//
// Statuses: on_stream_end (optional) sees every stream's end with the status
// it ended with (OK for a stream the daemon closed) and the delay before the
// next attempt. The watcher gives up, and Done() becomes true, only on codes
// a retry cannot fix (INVALID_ARGUMENT, UNIMPLEMENTED, PERMISSION_DENIED,
// UNAUTHENTICATED); final_status() then says why.
//
// Threads: callbacks run on the watcher's thread, one at a time. They may
// call RequestStop() and the accessors, but not Stop() (it joins that
// thread). Stop() is idempotent and is also run by the destructor.
#ifndef SHMHUB_CLIENT_HUB_EVENT_WATCHER_H_
#define SHMHUB_CLIENT_HUB_EVENT_WATCHER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shmhub/v1/hub.grpc.pb.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::client {

struct EventWatcherOptions {
  // The first stream's request (see WatchEventsRequest in hub.proto).
  bool snapshot_first = false;
  std::optional<uint64_t> resume_after_sequence;
  std::string hub_instance_id;
  // Reconnect backoff: starts at initial_backoff, doubles per failed
  // attempt up to max_backoff, and starts over after a stream that
  // delivered at least one message. Raised to at least 1ms, and max_backoff
  // to at least initial_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
};

// Where a watcher stands in a hub instance's event sequence.
struct WatchPosition {
  uint64_t sequence = 0;
  std::string hub_instance_id;
};

class EventWatcher {
 public:
  using ResponseCallback = std::function<void(const v1::WatchEventsResponse&)>;
  using StreamEndCallback =
      std::function<void(const absl::Status& status, absl::Duration retry_in)>;

  // `channel` must not be null; `on_response` must be callable. Use
  // MakeHubChannel (hub_client.h): a channel with gRPC's default reconnect
  // backoff keeps failing fast for up to 2 minutes after the daemon is back.
  EventWatcher(std::shared_ptr<grpc::Channel> channel, EventWatcherOptions options,
               ResponseCallback on_response, StreamEndCallback on_stream_end = nullptr);
  ~EventWatcher();
  EventWatcher(const EventWatcher&) = delete;
  EventWatcher& operator=(const EventWatcher&) = delete;

  // Starts the watcher thread. Call once.
  void Start();
  // Asks the watcher to stop: cancels the current stream and wakes a
  // backoff wait. Returns at once; safe from the callbacks.
  void RequestStop();
  // RequestStop, then joins the thread. No callback runs after it returns.
  void Stop();

  // True once the watcher thread has ended (stopped or gave up).
  bool Done() const;
  // Blocks until Done() or until `timeout` passes; returns Done().
  bool WaitUntilDone(absl::Duration timeout) const;
  // OK while running and after a requested stop; the fatal status when the
  // watcher gave up.
  absl::Status final_status() const;

  // The last position seen; nullopt before the first positioned message.
  std::optional<WatchPosition> position() const;
  // Streams opened so far (1 after the first connect, +1 per reconnect).
  int streams_opened() const;

 private:
  void Run();
  // Runs one stream to its end and returns its status. `delivered` says
  // whether any message arrived.
  absl::Status RunStream(const v1::WatchEventsRequest& request, bool& delivered);
  v1::WatchEventsRequest NextRequest() const;
  void Track(const v1::WatchEventsResponse& response);

  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::PeerHub::Stub> stub_;
  const EventWatcherOptions options_;
  const ResponseCallback on_response_;
  const StreamEndCallback on_stream_end_;

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  // The open stream's context, so RequestStop can cancel it.
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::optional<WatchPosition> position_ ABSL_GUARDED_BY(mu_);
  int streams_opened_ ABSL_GUARDED_BY(mu_) = 0;

  // Joined by Stop; only Start and Stop touch it.
  absl::Mutex thread_mu_;
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_HUB_EVENT_WATCHER_H_
