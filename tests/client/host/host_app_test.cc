// HostApp against a daemon played by the test over a real Unix socket
// (record by record, shm/host_control.h), with a real segment, a real
// guest attach and real RingLinks: registration and its refusals, links
// for announced peers, the recovery handshake (acknowledged only once every
// view is released, abandoned when the daemon went ahead), daemon death
// and a daemon that breaks the protocol. The real shmhubd is in
// tests/server/hub/peer_hub_host_test.cc and tests/e2e.
//
// Ordering without clocks: the HostApp handles records in order on one
// thread, so a PEER_RECOVERING for a peer it never served, which it answers
// at once, is a barrier: when that answer arrives, every record before it
// has been handled, and any acknowledgement those produced would have come
// first.
#include "client/host/host_app.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/link/ring_link.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shm/host_control.h"
#include "shm/peer_table.h"
#include "shm/poll_fd.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "shm/unique_fd.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unix_listener.h"

namespace shmhub::client {
namespace {

using ::testing::HasSubstr;

constexpr std::chrono::milliseconds kWait{10'000};
// A peer id no test attaches: the barrier of the file comment.
constexpr uint32_t kBarrierPeer = 2;

shm::SegmentConfig SmallConfig() {
  shm::SegmentConfig config;
  config.max_guests = 2;
  config.ring_capacity = 4096;
  config.classes = {{64, 8}, {1024, 8}};
  config.max_payload_size = 1024 - 4;
  return config;
}

// The daemon's side of the socket, played by the test.
class ScriptedDaemon {
 public:
  explicit ScriptedDaemon(const std::string& path) : path_(path) {
    absl::StatusOr<int> listening = ::shmhub::testing::ListenOnUnixSocket(path, 4);
    EXPECT_TRUE(listening.ok()) << listening.status();
    if (listening.ok()) listener_.Reset(*listening);
  }

  // Accepts the next connection and checks it asked for SHH1.
  void AcceptRequest() {
    const shm::Deadline deadline = shm::DeadlineAfter(kWait);
    absl::StatusOr<short> ready = shm::PollFd(listener_.get(), POLLIN, deadline);
    ASSERT_TRUE(ready.ok() && *ready != 0) << "no connection";
    connection_.Reset(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(connection_.valid());
    uint8_t request[shm::kHostRequestSize];
    size_t have = 0;
    while (have < sizeof(request)) {
      ASSERT_TRUE(*shm::PollFd(connection_.get(), POLLIN, deadline) != 0) << "no request";
      const ssize_t n = ::recv(connection_.get(), request + have, sizeof(request) - have, 0);
      ASSERT_GT(n, 0);
      have += static_cast<size_t>(n);
    }
    EXPECT_TRUE(shm::IsHostRequest(request));
  }

  void Send(const shm::HostRecord& record, const std::vector<int>& fds = {}) {
    ASSERT_TRUE(
        shm::SendHostRecord(connection_.get(), record, fds, shm::DeadlineAfter(kWait)).ok());
  }
  void SendRaw(const shm::HostRecord& record) {
    const auto bytes = shm::EncodeHostRecord(record);
    ASSERT_EQ(::send(connection_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // The next record from the host application.
  absl::StatusOr<shm::HostRecord> Next() {
    absl::StatusOr<shm::ReceivedHostRecord> next =
        reader_.ReadOneBefore(connection_.get(), shm::DeadlineAfter(kWait));
    if (!next.ok()) return next.status();
    return next->record;
  }
  void HangUp() { connection_.Reset(); }

 private:
  std::string path_;
  shm::UniqueFd listener_;
  shm::UniqueFd connection_;
  shm::HostRecordReader reader_{shm::HostControlSender::kHost};
};

class HostAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
        shm::Segment::Create(dir_.File("segment"), SmallConfig());
    ASSERT_TRUE(segment.ok()) << segment.status();
    segment_ = *std::move(segment);
    absl::StatusOr<std::unique_ptr<shm::Segment>> guest =
        shm::Segment::Attach(dir_.File("segment"));
    ASSERT_TRUE(guest.ok()) << guest.status();
    guest_segment_ = *std::move(guest);
  }

  // Registers a HostApp; the daemon answers with `reply` (REGISTERED sends
  // the segment).
  absl::StatusOr<std::unique_ptr<HostApp>> Register(
      const shm::HostRecord& reply = shm::RegisteredRecord(), HostAppOptions options = {}) {
    std::thread daemon_side([&] {
      daemon_.AcceptRequest();
      if (reply.type == shm::HostRecordType::kRegistered) {
        daemon_.Send(reply, {segment_->fd()});
      } else {
        daemon_.Send(reply);
      }
    });
    absl::StatusOr<std::unique_ptr<HostApp>> app = HostApp::Register(socket_path_, options);
    daemon_side.join();
    return app;
  }

  // A guest attached by path, and its link.
  struct Guest {
    uint32_t peer_id = 0;
    uint32_t epoch = 0;
    std::unique_ptr<RingLink> link;
  };
  Guest AttachGuest() {
    Guest guest;
    absl::StatusOr<shm::Occupancy> taken = guest_segment_->peers().AttachFirstFree();
    EXPECT_TRUE(taken.ok()) << taken.status();
    if (!taken.ok()) return guest;
    guest.peer_id = taken->peer_id;
    guest.epoch = taken->epoch;
    LinkEndpoints endpoints;
    endpoints.segment = guest_segment_.get();
    endpoints.peer_id = guest.peer_id;
    endpoints.epoch = guest.epoch;
    endpoints.side = LinkSide::kGuest;
    absl::StatusOr<std::unique_ptr<RingLink>> link = RingLink::Create(std::move(endpoints));
    EXPECT_TRUE(link.ok()) << link.status();
    if (link.ok()) guest.link = *std::move(link);
    return guest;
  }

  // The next event, which must be of `kind`.
  std::optional<HostEvent> Expect(HostApp& app, HostEventKind kind) {
    std::optional<HostEvent> event = app.NextEvent(absl::Now() + absl::Seconds(10));
    EXPECT_TRUE(event.has_value()) << "no event";
    if (!event.has_value()) return std::nullopt;
    EXPECT_EQ(event->kind, kind);
    if (event->kind != kind) return std::nullopt;
    return event;
  }

  // Sends the barrier and returns the first acknowledgement that arrives.
  absl::StatusOr<shm::HostRecord> FirstAckAfterBarrier() {
    daemon_.Send(shm::PeerRecoveringRecord({kBarrierPeer, 1}, shm::PeerDeparture::kCrashed));
    return daemon_.Next();
  }

  size_t FreeSlots(uint32_t klass) { return *segment_->pool().FreeCount(klass); }

  shmhub::testing::TempDir dir_;
  const std::string socket_path_ = dir_.File("hub.sock");
  ScriptedDaemon daemon_{socket_path_};
  std::unique_ptr<shm::Segment> segment_;
  std::unique_ptr<shm::Segment> guest_segment_;
};

TEST_F(HostAppTest, RegisterMapsTheSegmentTheDaemonSends) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ((*app)->segment().layout().max_guests, 2u);
  EXPECT_EQ((*app)->segment().layout().total_size, segment_->layout().total_size);
  EXPECT_TRUE((*app)->status().ok());
}

TEST_F(HostAppTest, RefusalsBecomeAlreadyExistsAndUnavailable) {
  absl::StatusOr<std::unique_ptr<HostApp>> taken =
      Register(shm::RefusedRecord(shm::HostRefusal::kAlreadyRegistered));
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kAlreadyExists) << taken.status();
  EXPECT_TRUE(absl::StrContains(taken.status().message(), "another host application"));

  absl::StatusOr<std::unique_ptr<HostApp>> closing =
      Register(shm::RefusedRecord(shm::HostRefusal::kShuttingDown));
  EXPECT_EQ(closing.status().code(), absl::StatusCode::kUnavailable) << closing.status();
}

TEST_F(HostAppTest, NothingListeningIsUnavailableAndNamesTheSocket) {
  const std::string nowhere = dir_.File("nothing.sock");
  absl::StatusOr<std::unique_ptr<HostApp>> app = HostApp::Register(nowhere);
  EXPECT_EQ(app.status().code(), absl::StatusCode::kUnavailable) << app.status();
  EXPECT_TRUE(absl::StrContains(app.status().message(), nowhere)) << app.status();
}

TEST_F(HostAppTest, DaemonThatNeverAnswersIsDeadlineExceeded) {
  std::thread daemon_side([&] { daemon_.AcceptRequest(); });
  HostAppOptions options;
  options.register_timeout = absl::Milliseconds(50);
  absl::StatusOr<std::unique_ptr<HostApp>> app = HostApp::Register(socket_path_, options);
  daemon_side.join();
  EXPECT_EQ(app.status().code(), absl::StatusCode::kDeadlineExceeded) << app.status();
}

TEST_F(HostAppTest, AnnouncedPeerGetsAHostLinkThatCarriesItsFrames) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  Guest guest = AttachGuest();
  ASSERT_NE(guest.link, nullptr);
  daemon_.Send(shm::PeerAttachedRecord({guest.peer_id, guest.epoch}, 0));
  std::optional<HostEvent> attached = Expect(**app, HostEventKind::kPeerAttached);
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(attached->peer_id, guest.peer_id);
  EXPECT_EQ(attached->epoch, guest.epoch);
  ASSERT_NE(attached->link, nullptr);

  const std::vector<uint8_t> hello = {'h', 'e', 'l', 'l', 'o'};
  ASSERT_TRUE(guest.link->Send(hello, absl::Now() + absl::Seconds(10)).ok());
  absl::StatusOr<ReceivedFrame> got = attached->link->Receive(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::vector<uint8_t>(got->data().begin(), got->data().end()), hello);
  got->Release();
  ASSERT_TRUE(attached->link->Send(hello, absl::Now() + absl::Seconds(10)).ok());
  absl::StatusOr<ReceivedFrame> back = guest.link->Receive(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->data().size(), hello.size());
}

TEST_F(HostAppTest, RecoveryIsAcknowledgedOnlyOnceEveryViewIsReleased) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  Guest guest = AttachGuest();
  daemon_.Send(shm::PeerAttachedRecord({guest.peer_id, guest.epoch}, 0));
  std::optional<HostEvent> attached = Expect(**app, HostEventKind::kPeerAttached);
  ASSERT_TRUE(attached.has_value());
  const size_t free_before = FreeSlots(1);
  // A payload in a pool slot the guest owns: the view points into it.
  const std::vector<uint8_t> payload(600, 0xAB);
  ASSERT_TRUE(guest.link->Send(payload, absl::Now() + absl::Seconds(10)).ok());
  absl::StatusOr<ReceivedFrame> view = attached->link->Receive(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(FreeSlots(1), free_before - 1);

  daemon_.Send(
      shm::PeerRecoveringRecord({guest.peer_id, guest.epoch}, shm::PeerDeparture::kCrashed));
  std::optional<HostEvent> departing = Expect(**app, HostEventKind::kPeerDeparting);
  ASSERT_TRUE(departing.has_value());
  EXPECT_EQ(departing->peer_id, guest.peer_id);
  EXPECT_EQ(departing->departure, shm::PeerDeparture::kCrashed);
  EXPECT_EQ(attached->link->Receive(absl::Now() + absl::Seconds(10)).status().code(),
            absl::StatusCode::kAborted);

  // While the view is held, the only answer is the barrier's.
  absl::StatusOr<shm::HostRecord> first = FirstAckAfterBarrier();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, shm::RecoveryReadyRecord({kBarrierPeer, 1}));
  EXPECT_EQ(std::vector<uint8_t>(view->data().begin(), view->data().end()), payload)
      << "the view changed under the application";

  view->Release();
  absl::StatusOr<shm::HostRecord> ack = daemon_.Next();
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(*ack, shm::RecoveryReadyRecord({guest.peer_id, guest.epoch}));
  EXPECT_EQ(FreeSlots(1), free_before);
  EXPECT_EQ((*app)->abandoned_handshakes(), 0u);
}

TEST_F(HostAppTest, VanishedPeerDepartsWithoutAnAcknowledgement) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  Guest guest = AttachGuest();
  daemon_.Send(shm::PeerAttachedRecord({guest.peer_id, guest.epoch}, 0));
  ASSERT_TRUE(Expect(**app, HostEventKind::kPeerAttached).has_value());
  daemon_.Send(
      shm::PeerRecoveringRecord({guest.peer_id, guest.epoch}, shm::PeerDeparture::kVanished));
  std::optional<HostEvent> departing = Expect(**app, HostEventKind::kPeerDeparting);
  ASSERT_TRUE(departing.has_value());
  EXPECT_EQ(departing->departure, shm::PeerDeparture::kVanished);
  absl::StatusOr<shm::HostRecord> first = FirstAckAfterBarrier();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->peer_id, kBarrierPeer);
}

TEST_F(HostAppTest, HandshakeIsAbandonedWhenTheDaemonRecoversWithoutIt) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  Guest guest = AttachGuest();
  daemon_.Send(shm::PeerAttachedRecord({guest.peer_id, guest.epoch}, 0));
  std::optional<HostEvent> attached = Expect(**app, HostEventKind::kPeerAttached);
  ASSERT_TRUE(attached.has_value());
  const std::vector<uint8_t> payload(600, 0x5A);
  ASSERT_TRUE(guest.link->Send(payload, absl::Now() + absl::Seconds(10)).ok());
  absl::StatusOr<ReceivedFrame> view = attached->link->Receive(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(view.ok()) << view.status();
  daemon_.Send(shm::PeerRecoveringRecord({guest.peer_id, guest.epoch}, shm::PeerDeparture::kLeft));
  ASSERT_TRUE(Expect(**app, HostEventKind::kPeerDeparting).has_value());

  // The daemon's --host_ack_timeout passed: it empties the entry.
  (*segment_->peers().Entry(guest.peer_id)).Reset();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*app)->abandoned_handshakes() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ((*app)->abandoned_handshakes(), 1u);
  view->Release();
  absl::StatusOr<shm::HostRecord> first = FirstAckAfterBarrier();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->peer_id, kBarrierPeer) << "acknowledged a recovery it had given up";
}

TEST_F(HostAppTest, ADaemonThatSaidGoodbyeAndHangsUpClosesTheLinksAndEndsWithDaemonGone) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  Guest guest = AttachGuest();
  daemon_.Send(shm::PeerAttachedRecord({guest.peer_id, guest.epoch}, 0));
  std::optional<HostEvent> attached = Expect(**app, HostEventKind::kPeerAttached);
  ASSERT_TRUE(attached.has_value());

  segment_->SetHostGoodbye();
  daemon_.HangUp();
  std::optional<HostEvent> gone = Expect(**app, HostEventKind::kDaemonGone);
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->status.code(), absl::StatusCode::kUnavailable) << gone->status;
  EXPECT_THAT(std::string(gone->status.message()), HasSubstr("host_goodbye"));
  EXPECT_EQ((*app)->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(attached->link->Receive(absl::Now() + absl::Seconds(10)).status().code(),
            absl::StatusCode::kCancelled);
}

TEST_F(HostAppTest, ADaemonThatHangsUpWithoutGoodbyeIsRegisteredAgainAndGetsTheLinksBack) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  Guest guest = AttachGuest();
  daemon_.Send(shm::PeerAttachedRecord({guest.peer_id, guest.epoch}, 0));
  std::optional<HostEvent> attached = Expect(**app, HostEventKind::kPeerAttached);
  ASSERT_TRUE(attached.has_value());

  // The daemon dies (or hands over) and a new one listens on the same path.
  daemon_.HangUp();
  daemon_.AcceptRequest();
  daemon_.Send(shm::RegisteredRecord(), {segment_->fd()});
  absl::StatusOr<shm::HostRecord> handback = daemon_.Next();
  ASSERT_TRUE(handback.ok()) << handback.status();
  EXPECT_EQ(*handback, shm::PeerHandbackRecord({guest.peer_id, guest.epoch}, 0));
  // The new daemon announces the guest again: nothing for the application.
  daemon_.Send(shm::PeerAttachedRecord({guest.peer_id, guest.epoch}, 0));
  EXPECT_FALSE((*app)->NextEvent(absl::Now() + absl::Milliseconds(200)).has_value());
  EXPECT_TRUE((*app)->status().ok()) << (*app)->status();
  EXPECT_EQ((*app)->reconnections(), 1u);
  // The link never stopped.
  const std::vector<uint8_t> hello = {'h', 'i'};
  ASSERT_TRUE(guest.link->Send(hello, absl::Now() + absl::Seconds(10)).ok());
  absl::StatusOr<ReceivedFrame> got = attached->link->Receive(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data().size(), hello.size());
  got->Release();
  // And the new daemon's PEER_RECOVERING is answered as before.
  daemon_.Send(shm::PeerRecoveringRecord({guest.peer_id, guest.epoch}, shm::PeerDeparture::kLeft));
  absl::StatusOr<shm::HostRecord> ack = daemon_.Next();
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(*ack, shm::RecoveryReadyRecord({guest.peer_id, guest.epoch}));
}

TEST_F(HostAppTest, ADaemonThatComesBackWithAnotherSegmentEndsTheRegistrationAskingToRegisterAgain) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  absl::StatusOr<std::unique_ptr<shm::Segment>> other =
      shm::Segment::Create(dir_.File("other"), SmallConfig());
  ASSERT_TRUE(other.ok()) << other.status();
  daemon_.HangUp();
  daemon_.AcceptRequest();
  daemon_.Send(shm::RegisteredRecord(), {(*other)->fd()});
  std::optional<HostEvent> gone = Expect(**app, HostEventKind::kDaemonGone);
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->status.code(), absl::StatusCode::kFailedPrecondition) << gone->status;
  EXPECT_THAT(std::string(gone->status.message()), HasSubstr("register again"));
}

TEST_F(HostAppTest, DaemonRecordOnlyAHostSendsEndsTheRegistration) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  daemon_.SendRaw(shm::RecoveryReadyRecord({1, 1}));
  std::optional<HostEvent> gone = Expect(**app, HostEventKind::kDaemonGone);
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->status.code(), absl::StatusCode::kDataLoss) << gone->status;
  EXPECT_EQ(shm::ShmErrcOf(gone->status), shm::ShmErrc::kHostRecordWrongSender);
}

TEST_F(HostAppTest, DestroyingTheHostAppClosesItsConnection) {
  absl::StatusOr<std::unique_ptr<HostApp>> app = Register();
  ASSERT_TRUE(app.ok()) << app.status();
  app->reset();
  EXPECT_EQ(shm::ShmErrcOf(daemon_.Next().status()), shm::ShmErrc::kHostControlClosed);
}

}  // namespace
}  // namespace shmhub::client
