#include "server/rpc/watch_events_reactor.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/log.h"
#include "server/base/proto_time.h"
#include "server/base/shutting_down.h"
#include "server/rpc/grpc_status.h"

namespace shmhub::server {
namespace {

// Snapshot-then-subscribe fails only when more events than the journal or
// the queue holds arrive between the two calls; a few tries are plenty.
constexpr int kSnapshotAttempts = 4;

// A client-supplied id, fit for a message: escaped and cut short.
std::string QuoteId(const std::string& id) {
  constexpr size_t kShown = 64;
  return absl::StrCat("'", absl::CHexEscape(id.substr(0, kShown)),
                      id.size() > kShown ? "...'" : "'");
}

}  // namespace

WatchEventsReactor::WatchEventsReactor(const Context& context, std::string peer,
                                       const v1::WatchEventsRequest& request)
    : context_(context), peer_(std::move(peer)), opened_at_(absl::Now()) {
  {
    absl::MutexLock lock(&mu_);
    last_write_ = opened_at_;
    absl::StatusOr<uint64_t> id = context_.dispatcher->Register([this] { Pump(); });
    if (!id.ok()) {
      error_ = ToGrpcStatus(id.status());
    } else {
      id_ = *id;
      if (context_.hub->shutting_down()) {
        error_ = ToGrpcStatus(ShuttingDownError("no new watch streams"));
      } else {
        StartLocked(request);
      }
    }
  }
  Log(LogLevel::kInfo,
      absl::StrCat("watch stream opened by ", peer_, " (snapshot_first=", request.snapshot_first(),
                   request.has_resume_after_sequence()
                       ? absl::StrCat(", resume_after_sequence=", request.resume_after_sequence())
                       : std::string(),
                   ")"));
  Pump();
}

WatchEventsReactor::~WatchEventsReactor() = default;

void WatchEventsReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    // A failed write means the client is gone or the server is stopping.
    if (!ok) cancelled_ = true;
  }
  Pump();
}

void WatchEventsReactor::OnCancel() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  Pump();
}

void WatchEventsReactor::OnDone() {
  uint64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    id = id_;
    id_ = 0;
  }
  // Outside mu_: Unregister may wait for a pump that is about to take mu_.
  if (id != 0) context_.dispatcher->Unregister(id);
  std::string summary;
  {
    absl::MutexLock lock(&mu_);
    subscription_.reset();
    summary = absl::StrCat(
        "watch stream of ", peer_, " closed after ",
        absl::FormatDuration(absl::Trunc(absl::Now() - opened_at_, absl::Milliseconds(1))), ": ",
        events_sent_, " events, ", resyncs_sent_, " resyncs, status ",
        absl::StatusCodeToString(static_cast<absl::StatusCode>(final_status_.error_code())),
        final_status_.ok() ? std::string()
                           : absl::StrCat(" (", final_status_.error_message(), ")"));
  }
  Log(LogLevel::kInfo, summary);
  delete this;
}

void WatchEventsReactor::Pump() {
  Action action = Action::kNone;
  const v1::WatchEventsResponse* message = nullptr;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    action = NextActionLocked();
    message = &current_;
    status = final_status_;
  }
  // gRPC may run OnWriteDone or OnDone inline here, and OnDone deletes
  // this: nothing below may touch a member.
  switch (action) {
    case Action::kNone:
      return;
    case Action::kWrite:
      StartWrite(message);
      return;
    case Action::kFinish:
      Finish(std::move(status));
      return;
  }
}

WatchEventsReactor::Action WatchEventsReactor::NextActionLocked() {
  if (finish_started_ || write_in_flight_) return Action::kNone;
  if (cancelled_) {
    return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "watch stream cancelled"));
  }
  if (error_.has_value()) return FinishLocked(*error_);
  if (finish_after_write_) return FinishLocked(grpc::Status::OK);
  if (!pending_.empty()) {
    v1::WatchEventsResponse message = std::move(pending_.front());
    pending_.pop_front();
    return WriteLocked(std::move(message));
  }
  if (subscription_ == nullptr) {
    return FinishLocked(
        grpc::Status(grpc::StatusCode::INTERNAL, "watch stream lost its subscription"));
  }

  v1::PeerEvent event;
  EventJournal::Subscription::Pull pull = subscription_->Next(&event);
  if (pull == EventJournal::Subscription::Pull::kEmpty && context_.hub->shutting_down()) {
    // The flag is read before looking again: had HOST_SHUTDOWN been queued
    // for this subscription, it is there now. If not, the subscription began
    // after it, and the stream ends here rather than wait for nothing.
    pull = subscription_->Next(&event);
    if (pull == EventJournal::Subscription::Pull::kEmpty) {
      return FinishLocked(ToGrpcStatus(ShuttingDownError()));
    }
  }
  switch (pull) {
    case EventJournal::Subscription::Pull::kEvent: {
      if (event.kind() == v1::EVENT_KIND_HOST_SHUTDOWN) finish_after_write_ = true;
      ++events_sent_;
      v1::WatchEventsResponse message;
      *message.mutable_event() = std::move(event);
      return WriteLocked(std::move(message));
    }
    case EventJournal::Subscription::Pull::kOverflowed:
      subscription_.reset();
      Log(LogLevel::kWarning,
          absl::StrCat("watch stream of ", peer_, " fell more than ", context_.queue_limit,
                       " events behind; sending RESYNC and a snapshot"));
      ResyncLocked(MakeResync(
          v1::Resync::REASON_SLOW_WATCHER, context_.journal->oldest_sequence(),
          absl::StrCat("this watcher fell more than ", context_.queue_limit,
                       " events behind (the hub's --watcher_queue); a snapshot follows")));
      return NextActionLocked();
    case EventJournal::Subscription::Pull::kEmpty:
      break;
  }
  const absl::Time now = absl::Now();
  if (now - last_write_ < context_.progress_interval) return Action::kNone;
  v1::WatchEventsResponse message;
  v1::Progress* progress = message.mutable_progress();
  progress->set_sequence(subscription_->delivered_through());
  progress->set_hub_instance_id(context_.journal->hub_instance_id());
  *progress->mutable_time() = ToProtoTimestamp(now);
  return WriteLocked(std::move(message));
}

void WatchEventsReactor::StartLocked(const v1::WatchEventsRequest& request) {
  const std::string& ours = context_.journal->hub_instance_id();
  if (request.has_resume_after_sequence() && !request.hub_instance_id().empty() &&
      request.hub_instance_id() != ours) {
    ResyncLocked(
        MakeResync(v1::Resync::REASON_INSTANCE_CHANGED, context_.journal->oldest_sequence(),
                   absl::StrCat("resume_after_sequence belongs to hub instance ",
                                QuoteId(request.hub_instance_id()), " but this is instance '", ours,
                                "' (the daemon restarted); a snapshot follows")));
    return;
  }
  if (request.snapshot_first()) {
    SnapshotAndSubscribeLocked();
    return;
  }
  if (request.has_resume_after_sequence()) {
    SubscribeLocked(request.resume_after_sequence());
    return;
  }
  SubscribeLocked(context_.journal->last_sequence());
}

void WatchEventsReactor::ResyncLocked(v1::Resync resync) {
  ++resyncs_sent_;
  context_.metrics->CountResync();
  v1::WatchEventsResponse message;
  *message.mutable_resync() = std::move(resync);
  pending_.push_back(std::move(message));
  SnapshotAndSubscribeLocked();
}

void WatchEventsReactor::SnapshotAndSubscribeLocked() {
  WatchDispatcher* dispatcher = context_.dispatcher;
  const uint64_t id = id_;
  for (int attempt = 0; attempt < kSnapshotAttempts; ++attempt) {
    v1::WatchEventsResponse message;
    *message.mutable_snapshot() = context_.hub->Snapshot();
    EventJournal::SubscribeResult result =
        context_.journal->Subscribe(message.snapshot().sequence(), context_.queue_limit,
                                    [dispatcher, id] { dispatcher->MarkReady(id); });
    if (result.subscription != nullptr) {
      subscription_ = std::move(result.subscription);
      pending_.push_back(std::move(message));
      return;
    }
  }
  error_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "events arrive faster than a consistent snapshot can be taken; "
                        "watch again");
}

void WatchEventsReactor::SubscribeLocked(uint64_t after) {
  WatchDispatcher* dispatcher = context_.dispatcher;
  const uint64_t id = id_;
  EventJournal::SubscribeResult result = context_.journal->Subscribe(
      after, context_.queue_limit, [dispatcher, id] { dispatcher->MarkReady(id); });
  if (result.subscription != nullptr) {
    subscription_ = std::move(result.subscription);
    return;
  }
  Log(LogLevel::kInfo,
      absl::StrCat("watch stream of ", peer_, " cannot resume after sequence ", after, ": ",
                   result.resync->message(), "; sending RESYNC and a snapshot"));
  ResyncLocked(*std::move(result.resync));
}

WatchEventsReactor::Action WatchEventsReactor::WriteLocked(v1::WatchEventsResponse message) {
  current_ = std::move(message);
  write_in_flight_ = true;
  last_write_ = absl::Now();
  return Action::kWrite;
}

WatchEventsReactor::Action WatchEventsReactor::FinishLocked(grpc::Status status) {
  finish_started_ = true;
  final_status_ = std::move(status);
  return Action::kFinish;
}

}  // namespace shmhub::server
