#include "client/hub/event_watcher.h"

#include <algorithm>
#include <utility>

#include "client/hub/hub_client.h"

namespace shmhub::client {
namespace {

// Codes no retry can fix: the request or the client itself is wrong.
bool IsFatal(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

// Backoffs below 1ms would spin; a max below the initial one is the initial.
EventWatcherOptions Normalized(EventWatcherOptions options) {
  options.initial_backoff = std::max(options.initial_backoff, absl::Milliseconds(1));
  options.max_backoff = std::max(options.max_backoff, options.initial_backoff);
  return options;
}

}  // namespace

EventWatcher::EventWatcher(std::shared_ptr<grpc::Channel> channel, EventWatcherOptions options,
                           ResponseCallback on_response, StreamEndCallback on_stream_end)
    : channel_(std::move(channel)),
      stub_(v1::PeerHub::NewStub(channel_)),
      options_(Normalized(std::move(options))),
      on_response_(std::move(on_response)),
      on_stream_end_(std::move(on_stream_end)) {}

EventWatcher::~EventWatcher() { Stop(); }

void EventWatcher::Start() {
  absl::MutexLock thread_lock(&thread_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (started_) return;
    started_ = true;
  }
  thread_ = std::thread([this] { Run(); });
}

void EventWatcher::RequestStop() {
  absl::MutexLock lock(&mu_);
  stop_requested_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

void EventWatcher::Stop() {
  RequestStop();
  absl::MutexLock thread_lock(&thread_mu_);
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  done_ = true;
}

bool EventWatcher::Done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

bool EventWatcher::WaitUntilDone(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
}

absl::Status EventWatcher::final_status() const {
  absl::MutexLock lock(&mu_);
  return final_status_;
}

std::optional<WatchPosition> EventWatcher::position() const {
  absl::MutexLock lock(&mu_);
  return position_;
}

int EventWatcher::streams_opened() const {
  absl::MutexLock lock(&mu_);
  return streams_opened_;
}

void EventWatcher::Run() {
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    bool delivered = false;
    const absl::Status status = RunStream(NextRequest(), delivered);
    {
      absl::MutexLock lock(&mu_);
      if (stop_requested_) break;
    }
    if (IsFatal(status.code())) {
      if (on_stream_end_) on_stream_end_(status, absl::InfiniteDuration());
      absl::MutexLock lock(&mu_);
      final_status_ = status;
      break;
    }
    if (delivered) backoff = options_.initial_backoff;
    if (on_stream_end_) on_stream_end_(status, backoff);
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_requested_), backoff)) break;
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  absl::MutexLock lock(&mu_);
  done_ = true;
}

absl::Status EventWatcher::RunStream(const v1::WatchEventsRequest& request, bool& delivered) {
  grpc::ClientContext context;
  // Wait for the daemon instead of failing fast: a blocking channel only
  // makes connection attempts while a call waits on it, so fail-fast
  // retries spaced by our backoff could keep missing a daemon that is back.
  // RequestStop cancels the wait.
  context.set_wait_for_ready(true);
  {
    absl::MutexLock lock(&mu_);
    if (stop_requested_) return absl::CancelledError("watcher stopped");
    context_ = &context;
    ++streams_opened_;
  }
  std::unique_ptr<grpc::ClientReader<v1::WatchEventsResponse>> reader =
      stub_->WatchEvents(&context, request);
  v1::WatchEventsResponse response;
  while (reader->Read(&response)) {
    delivered = true;
    Track(response);
    on_response_(response);
  }
  const grpc::Status status = reader->Finish();
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
  return FromGrpcStatus(status);
}

v1::WatchEventsRequest EventWatcher::NextRequest() const {
  v1::WatchEventsRequest request;
  absl::MutexLock lock(&mu_);
  if (position_.has_value()) {
    request.set_resume_after_sequence(position_->sequence);
    request.set_hub_instance_id(position_->hub_instance_id);
    return request;
  }
  request.set_snapshot_first(options_.snapshot_first);
  if (options_.resume_after_sequence.has_value()) {
    request.set_resume_after_sequence(*options_.resume_after_sequence);
  }
  request.set_hub_instance_id(options_.hub_instance_id);
  return request;
}

void EventWatcher::Track(const v1::WatchEventsResponse& response) {
  std::optional<WatchPosition> seen;
  switch (response.message_case()) {
    case v1::WatchEventsResponse::kEvent:
      seen = WatchPosition{response.event().sequence(), response.event().hub_instance_id()};
      break;
    case v1::WatchEventsResponse::kSnapshot:
      seen = WatchPosition{response.snapshot().sequence(), response.snapshot().hub_instance_id()};
      break;
    case v1::WatchEventsResponse::kProgress:
      seen = WatchPosition{response.progress().sequence(), response.progress().hub_instance_id()};
      break;
    case v1::WatchEventsResponse::kResync:
    case v1::WatchEventsResponse::MESSAGE_NOT_SET:
      // A Resync carries no position; the Snapshot after it does.
      break;
  }
  if (!seen.has_value()) return;
  absl::MutexLock lock(&mu_);
  position_ = std::move(seen);
}

}  // namespace shmhub::client
