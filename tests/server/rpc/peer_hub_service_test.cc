// The unary RPCs of the gRPC edge, against a real in-process server over
// real loopback gRPC: every bad input gets the right code and a message
// naming the field, nothing changes then, and the server keeps serving.
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/proto_time.h"
#include "shm/segment.h"
#include "tests/server/in_process_hub.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::SetDeadline;
using ::testing::HasSubstr;

struct BadInput {
  std::string name;
  // Makes the call and returns its status.
  std::function<grpc::Status(v1::PeerHub::Stub&, grpc::ClientContext*)> call;
  grpc::StatusCode code;
  std::string message_part;
};

grpc::Status GetPeer(v1::PeerHub::Stub& stub, grpc::ClientContext* context, uint32_t peer_id) {
  v1::GetPeerRequest request;
  request.set_peer_id(peer_id);
  v1::GetPeerResponse response;
  return stub.GetPeer(context, request, &response);
}

grpc::Status Release(v1::PeerHub::Stub& stub, grpc::ClientContext* context, uint32_t peer_id,
                     uint32_t epoch = 1) {
  v1::ReleasePeerRequest request;
  request.set_peer_id(peer_id);
  request.set_epoch(epoch);
  v1::ReleasePeerResponse response;
  return stub.ReleasePeer(context, request, &response);
}

grpc::Status Evict(v1::PeerHub::Stub& stub, grpc::ClientContext* context, uint32_t peer_id,
                   uint32_t epoch = 1, const std::string& reason = "") {
  v1::EvictPeerRequest request;
  request.set_peer_id(peer_id);
  request.set_epoch(epoch);
  request.set_reason(reason);
  v1::EvictPeerResponse response;
  return stub.EvictPeer(context, request, &response);
}

grpc::Status Reserve(v1::PeerHub::Stub& stub, grpc::ClientContext* context,
                     const std::function<void(v1::ReservePeerRequest&)>& fill) {
  v1::ReservePeerRequest request;
  fill(request);
  v1::ReservePeerResponse response;
  return stub.ReservePeer(context, request, &response);
}

void SetTtl(v1::ReservePeerRequest& request, int64_t seconds, int32_t nanos) {
  request.mutable_lease_ttl()->set_seconds(seconds);
  request.mutable_lease_ttl()->set_nanos(nanos);
}

// The hub these run against has max_guests 8 and --max_lease_ttl 1m.
std::vector<BadInput> BadInputs() {
  using grpc::StatusCode;
  std::vector<BadInput> rows;
  for (uint32_t id : {0u, 256u, 4294967295u}) {
    rows.push_back({absl::StrCat("GetPeer peer_id ", id),
                    [id](auto& stub, auto* context) { return GetPeer(stub, context, id); },
                    StatusCode::INVALID_ARGUMENT, absl::StrCat("peer_id must be 1..8, got ", id)});
    rows.push_back({absl::StrCat("ReleasePeer peer_id ", id),
                    [id](auto& stub, auto* context) { return Release(stub, context, id); },
                    StatusCode::INVALID_ARGUMENT, absl::StrCat("peer_id must be 1..8, got ", id)});
    rows.push_back({absl::StrCat("EvictPeer peer_id ", id),
                    [id](auto& stub, auto* context) { return Evict(stub, context, id); },
                    StatusCode::INVALID_ARGUMENT, absl::StrCat("peer_id must be 1..8, got ", id)});
  }
  for (uint32_t id : {9u, 255u}) {
    const std::string expected = absl::StrCat("peer_id ", id, " does not exist");
    rows.push_back({absl::StrCat("GetPeer peer_id ", id, " above max_guests"),
                    [id](auto& stub, auto* context) { return GetPeer(stub, context, id); },
                    StatusCode::NOT_FOUND, expected});
    rows.push_back({absl::StrCat("ReleasePeer peer_id ", id, " above max_guests"),
                    [id](auto& stub, auto* context) { return Release(stub, context, id); },
                    StatusCode::NOT_FOUND, expected});
    rows.push_back({absl::StrCat("EvictPeer peer_id ", id, " above max_guests"),
                    [id](auto& stub, auto* context) { return Evict(stub, context, id); },
                    StatusCode::NOT_FOUND, expected});
  }
  rows.push_back(
      {"EvictPeer reason of 257 bytes",
       [](auto& stub, auto* context) { return Evict(stub, context, 1, 1, std::string(257, 'r')); },
       StatusCode::INVALID_ARGUMENT, "reason is 257 bytes; at most 256"});

  auto reserve_row = [&rows](std::string name, std::function<void(v1::ReservePeerRequest&)> fill,
                             std::string message_part) {
    rows.push_back({std::move(name),
                    [fill](auto& stub, auto* context) { return Reserve(stub, context, fill); },
                    grpc::StatusCode::INVALID_ARGUMENT, std::move(message_part)});
  };
  reserve_row(
      "lease_ttl 0", [](auto& r) { SetTtl(r, 0, 0); },
      "lease_ttl must be within 1ms..1m (the hub's --max_lease_ttl), got 0");
  reserve_row(
      "lease_ttl negative", [](auto& r) { SetTtl(r, -5, 0); }, "got -5s");
  reserve_row(
      "lease_ttl below 1ms", [](auto& r) { SetTtl(r, 0, 999'999); }, "lease_ttl must be within");
  reserve_row(
      "lease_ttl over max", [](auto& r) { SetTtl(r, 61, 0); }, "got 1m1s");
  reserve_row(
      "lease_ttl huge", [](auto& r) { SetTtl(r, 315576000000, 0); }, "lease_ttl must be within");
  reserve_row(
      "lease_ttl beyond the Duration range", [](auto& r) { SetTtl(r, 315576000001, 0); },
      "lease_ttl is not a valid google.protobuf.Duration");
  reserve_row(
      "lease_ttl nanos out of range", [](auto& r) { SetTtl(r, 1, 1'000'000'000); },
      "lease_ttl is not a valid google.protobuf.Duration");
  reserve_row(
      "lease_ttl signs disagree", [](auto& r) { SetTtl(r, 1, -1); },
      "lease_ttl is not a valid google.protobuf.Duration");
  reserve_row(
      "owner of 257 bytes", [](auto& r) { r.set_owner(std::string(257, 'o')); },
      "owner is 257 bytes; at most 256");
  reserve_row(
      "owner of 1 MiB", [](auto& r) { r.set_owner(std::string(1 << 20, 'o')); },
      "owner is 1048576 bytes");
  reserve_row(
      "request_id of 129 bytes", [](auto& r) { r.set_request_id(std::string(129, 'q')); },
      "request_id is 129 bytes; at most 128");
  reserve_row(
      "33 labels",
      [](auto& r) {
        for (int i = 0; i < 33; ++i) (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
      },
      "labels has 33 entries; at most 32");
  reserve_row(
      "10000 labels",
      [](auto& r) {
        for (int i = 0; i < 10000; ++i) (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
      },
      "labels has 10000 entries");
  reserve_row(
      "empty label key", [](auto& r) { (*r.mutable_labels())[""] = "v"; },
      "labels: key '' must be 1..63 bytes");
  reserve_row(
      "label key with a space", [](auto& r) { (*r.mutable_labels())["bad key"] = "v"; },
      "labels: key 'bad key'");
  reserve_row(
      "label key of 64 bytes", [](auto& r) { (*r.mutable_labels())[std::string(64, 'k')] = "v"; },
      "must be 1..63 bytes of A-Z a-z 0-9 _ . - /");
  reserve_row(
      "label key with a control byte",
      [](auto& r) { (*r.mutable_labels())[std::string("a\nb")] = "v"; }, "labels: key 'a\\nb'");
  reserve_row(
      "label value of 257 bytes",
      [](auto& r) { (*r.mutable_labels())["team"] = std::string(257, 'v'); },
      "labels: value of key 'team' is 257 bytes; at most 256");
  reserve_row(
      "label value of 1 MiB",
      [](auto& r) { (*r.mutable_labels())["team"] = std::string(1 << 20, 'v'); },
      "labels: value of key 'team' is 1048576 bytes");
  return rows;
}

TEST(PeerHubServiceTest, BadInputGetsTheRightCodeAndAMessageNamingTheFieldAndChangesNothing) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  const uint64_t sequence_before = hub.server().journal().last_sequence();
  for (const BadInput& row : BadInputs()) {
    SCOPED_TRACE(row.name);
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::Status status = row.call(hub.stub(), &context);
    EXPECT_EQ(status.error_code(), row.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(row.message_part));
    // Hostile sizes never come back as huge messages.
    EXPECT_LT(status.error_message().size(), 300u) << status.error_message();
  }
  // Nothing was reserved, no event was published, and the server still serves.
  EXPECT_EQ(hub.server().journal().last_sequence(), sequence_before);
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListPeersResponse peers;
  ASSERT_TRUE(hub.stub().ListPeers(&context, v1::ListPeersRequest(), &peers).ok());
  EXPECT_EQ(peers.peers_size(), 0);
  v1::ReservePeerResponse reserved = hub.Reserve();
  EXPECT_EQ(reserved.peer_id(), 1u);
}

TEST(PeerHubServiceTest, ValuesAtTheDocumentedLimitsAreAccepted) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  v1::ReservePeerRequest request;
  SetTtl(request, 60, 0);  // exactly --max_lease_ttl
  request.set_owner(std::string(256, 'o'));
  request.set_request_id(std::string(128, 'q'));
  for (int i = 0; i < 32; ++i) {
    std::string key = absl::StrCat("k", i, "/A-z_.");
    key.resize(63, 'x');
    (*request.mutable_labels())[key] = std::string(256, 'v');
  }
  v1::ReservePeerResponse first = hub.Reserve(request);
  EXPECT_EQ(first.peer_id(), 1u);

  v1::ReservePeerRequest shortest;
  SetTtl(shortest, 0, 1'000'000);  // 1ms, the documented minimum
  EXPECT_EQ(hub.Reserve(shortest).peer_id(), 2u);

  v1::Peer peer = hub.GetPeer(1);
  EXPECT_EQ(peer.owner(), request.owner());
  EXPECT_EQ(peer.labels_size(), 32);

  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status status = Evict(hub.stub(), &context, 1, first.epoch(), std::string(256, 'r'));
  // Reserved is the wrong state for EvictPeer, but the reason itself passed.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
}

TEST(PeerHubServiceTest, UnsetLeaseTtlUsesTheDefaultAndASetOneIsHonoured) {
  InProcessHub hub([](HubConfig& config) { config.default_lease_ttl = absl::Seconds(20); });
  ASSERT_TRUE(hub.ok());
  const absl::Time before = absl::Now();
  v1::ReservePeerResponse by_default = hub.Reserve();
  v1::ReservePeerRequest request;
  SetTtl(request, 5, 0);
  v1::ReservePeerResponse explicit_ttl = hub.Reserve(request);
  const absl::Time after = absl::Now();

  auto expires = [](const v1::ReservePeerResponse& r) {
    return absl::FromUnixSeconds(r.lease_expires_at().seconds()) +
           absl::Nanoseconds(r.lease_expires_at().nanos());
  };
  EXPECT_GE(expires(by_default), before + absl::Seconds(20) - absl::Milliseconds(1));
  EXPECT_LE(expires(by_default), after + absl::Seconds(20) + absl::Milliseconds(1));
  EXPECT_GE(expires(explicit_ttl), before + absl::Seconds(5) - absl::Milliseconds(1));
  EXPECT_LE(expires(explicit_ttl), after + absl::Seconds(5) + absl::Milliseconds(1));
  EXPECT_EQ(by_default.segment_path(), hub.config().segment_path);
}

TEST(PeerHubServiceTest, ReleaseWithAStaleEpochFailsAndChangesNothing) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  v1::ReservePeerResponse reserved = hub.Reserve();
  const uint64_t sequence_before = hub.server().journal().last_sequence();
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::Status status = Release(hub.stub(), &context, reserved.peer_id(), reserved.epoch() + 1);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_FALSE(status.error_message().empty());
  }
  v1::Peer peer = hub.GetPeer(reserved.peer_id());
  EXPECT_EQ(peer.state(), v1::PEER_STATE_RESERVED);
  EXPECT_EQ(peer.epoch(), reserved.epoch());
  EXPECT_EQ(hub.server().journal().last_sequence(), sequence_before);

  hub.Release(reserved.peer_id(), reserved.epoch());
  EXPECT_EQ(hub.GetPeer(reserved.peer_id()).state(), v1::PEER_STATE_EMPTY);
  // The same release again is a wrong-state call now.
  grpc::ClientContext context;
  SetDeadline(&context);
  EXPECT_EQ(Release(hub.stub(), &context, reserved.peer_id(), reserved.epoch()).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST(PeerHubServiceTest, EvictWithAStaleEpochFailsAndTheRightEpochEvictsWithARecoveryReport) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  v1::ReservePeerResponse reserved = hub.Reserve();
  // Play the guest: claim the reservation in shared memory.
  absl::StatusOr<std::unique_ptr<shm::Segment>> guest =
      shm::Segment::Attach(reserved.segment_path());
  ASSERT_TRUE(guest.ok()) << guest.status();
  absl::StatusOr<shm::PeerEntryView> entry = (*guest)->peers().Entry(reserved.peer_id());
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(entry->ClaimFenced(reserved.epoch()).ok());
  hub.server().hub().Scan();
  ASSERT_EQ(hub.GetPeer(reserved.peer_id()).state(), v1::PEER_STATE_ATTACHED);

  {
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::Status status = Evict(hub.stub(), &context, reserved.peer_id(), reserved.epoch() - 1);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  }
  v1::Peer peer = hub.GetPeer(reserved.peer_id());
  EXPECT_EQ(peer.state(), v1::PEER_STATE_ATTACHED);
  EXPECT_EQ(peer.epoch(), reserved.epoch());

  grpc::ClientContext context;
  SetDeadline(&context);
  v1::EvictPeerRequest request;
  request.set_peer_id(reserved.peer_id());
  request.set_epoch(reserved.epoch());
  request.set_reason("test eviction");
  v1::EvictPeerResponse response;
  grpc::Status status = hub.stub().EvictPeer(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(response.has_recovery());
  EXPECT_TRUE(response.recovery().has_duration());
  EXPECT_EQ(response.recovery().problems(), 0u);
  EXPECT_EQ(hub.GetPeer(reserved.peer_id()).state(), v1::PEER_STATE_EMPTY);
}

TEST(PeerHubServiceTest, AllSlotsTakenReturnsResourceExhaustedAndAFreedSlotIsReusable) {
  InProcessHub hub([](HubConfig& config) { config.max_guests = 3; });
  ASSERT_TRUE(hub.ok());
  std::vector<v1::ReservePeerResponse> taken;
  for (int i = 0; i < 3; ++i) taken.push_back(hub.Reserve());
  EXPECT_EQ(taken[0].peer_id(), 1u);
  EXPECT_EQ(taken[1].peer_id(), 2u);
  EXPECT_EQ(taken[2].peer_id(), 3u);
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::Status status = Reserve(hub.stub(), &context, [](auto&) {});
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_FALSE(status.error_message().empty());
  }
  hub.Release(taken[1].peer_id(), taken[1].epoch());
  v1::ReservePeerResponse again = hub.Reserve();
  EXPECT_EQ(again.peer_id(), 2u);
  EXPECT_NE(again.epoch(), taken[1].epoch());
}

TEST(PeerHubServiceTest, RetriedReserveWithTheSameRequestIdReturnsTheSameReservation) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  v1::ReservePeerRequest request;
  request.set_request_id("orchestrator-42/attempt");
  v1::ReservePeerResponse first = hub.Reserve(request);
  v1::ReservePeerResponse retry = hub.Reserve(request);
  EXPECT_FALSE(first.replayed());
  EXPECT_TRUE(retry.replayed());
  EXPECT_EQ(retry.peer_id(), first.peer_id());
  EXPECT_EQ(retry.epoch(), first.epoch());
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListPeersResponse peers;
  ASSERT_TRUE(hub.stub().ListPeers(&context, v1::ListPeersRequest(), &peers).ok());
  EXPECT_EQ(peers.peers_size(), 1);
}

TEST(PeerHubServiceTest, GetSegmentInfoDescribesThisHub) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::GetSegmentInfoResponse info;
  ASSERT_TRUE(hub.stub().GetSegmentInfo(&context, v1::GetSegmentInfoRequest(), &info).ok());
  EXPECT_EQ(info.segment_path(), hub.config().segment_path);
  EXPECT_EQ(info.max_guests(), 8u);
  EXPECT_EQ(info.hub_instance_id(), hub.server().hub_instance_id());
}

TEST(PeerHubServiceTest, ListPeersIncludesEmptySlotsOnlyWhenAsked) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  hub.Reserve();
  for (bool include_empty : {false, true}) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ListPeersRequest request;
    request.set_include_empty(include_empty);
    v1::ListPeersResponse peers;
    ASSERT_TRUE(hub.stub().ListPeers(&context, request, &peers).ok());
    EXPECT_EQ(peers.peers_size(), include_empty ? 8 : 1);
    EXPECT_EQ(peers.peers(0).peer_id(), 1u);
    EXPECT_EQ(peers.peers(0).state(), v1::PEER_STATE_RESERVED);
  }
}

}  // namespace
}  // namespace shmhub::server
