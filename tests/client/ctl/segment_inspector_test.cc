// The offline inspection behind `shmhubctl inspect`, on a real segment
// created in a TempDir with one guest attached (no daemon): the collected
// values, the text dump and the JSON lines.
#include "client/ctl/segment_inspector.h"

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/reflection.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/ctl/commands.h"
#include "client/ctl/inspection_printer.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/segment.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::ctl {
namespace {

using ::google::protobuf::Struct;
using ::shmhub::shm::PeerState;
using ::shmhub::shm::Segment;
using ::shmhub::testing::TempDir;

constexpr uint64_t kIntervalNs = 20'000'000;
constexpr uint64_t kHeartbeatNs = 1'000'000'000'000;  // an arbitrary monotonic reading
constexpr uint32_t kQueuedBytes = 96;

Struct ParseJsonLine(const std::string& line) {
  Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &parsed);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << line;
  return parsed;
}

const google::protobuf::Value& Field(const Struct& object, const std::string& name) {
  static const google::protobuf::Value* const missing = new google::protobuf::Value();
  const auto it = object.fields().find(name);
  EXPECT_NE(it, object.fields().end()) << "no field " << name;
  return it == object.fields().end() ? *missing : it->second;
}

// Host segment with peer 1 attached (epoch 1), a heartbeat, bytes queued in
// its guest->host ring and one pool slot allocated by it.
class SegmentInspectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shm::SegmentConfig config;
    config.max_guests = 3;
    config.ring_capacity = 4096;
    config.classes = {{256, 4}, {1024, 2}};
    config.max_payload_size = 4096;
    config.heartbeat_interval_ns = kIntervalNs;
    absl::StatusOr<std::unique_ptr<Segment>> host = Segment::Create(path_, config);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = *std::move(host);

    absl::StatusOr<shm::Occupancy> reserved = host_->peers().ReserveFirstFree();
    ASSERT_TRUE(reserved.ok()) << reserved.status();
    absl::StatusOr<shm::PeerEntryView> entry = host_->peers().Entry(reserved->peer_id);
    ASSERT_TRUE(entry.ok());
    ASSERT_TRUE(entry->ClaimFenced(reserved->epoch).ok());
    entry->UpdateHeartbeat(kHeartbeatNs);
    shm::BipBuffer ring = host_->GuestToHostRing(0);
    ASSERT_TRUE(ring.TryGrant(kQueuedBytes).ok());
    ASSERT_TRUE(ring.Commit(kQueuedBytes).ok());
    ASSERT_TRUE(host_->pool().Allocate(100, reserved->peer_id).ok());
  }

  // What a separate process (shmhubctl) sees.
  SegmentInspection InspectAt(uint64_t now_ns) {
    absl::StatusOr<std::unique_ptr<Segment>> view = Segment::Attach(path_);
    EXPECT_TRUE(view.ok()) << view.status();
    return InspectSegment(**view, now_ns);
  }

  absl::FlagSaver flag_saver_;  // RunShmhubctl sets global flags
  TempDir dir_;
  const std::string path_ = dir_.File("hub");
  std::unique_ptr<Segment> host_;
};

TEST_F(SegmentInspectorTest, ReportsHeaderPeersRingsAndPool) {
  const SegmentInspection in = InspectAt(kHeartbeatNs + 5'000'000);

  EXPECT_EQ(in.path, path_);
  EXPECT_EQ(in.format_version, 7u);
  EXPECT_EQ(in.max_guests, 3u);
  EXPECT_EQ(in.ring_capacity_bytes, 4096u);
  EXPECT_EQ(in.max_payload_size_bytes, 4096u);
  EXPECT_EQ(in.inline_threshold_bytes, shm::kDefaultInlineThreshold);
  EXPECT_EQ(in.heartbeat_interval_ns, kIntervalNs);
  EXPECT_EQ(in.total_size_bytes, host_->layout().total_size);
  EXPECT_EQ(in.current_size_bytes, host_->layout().total_size);
  EXPECT_FALSE(in.host_goodbye);

  ASSERT_EQ(in.peers.size(), 3u);
  const InspectedPeer& peer = in.peers[0];
  EXPECT_EQ(peer.peer_id, 1u);
  EXPECT_TRUE(peer.state.Is(PeerState::kAttached));
  EXPECT_EQ(peer.epoch, 1u);
  EXPECT_EQ(peer.last_heartbeat_ns, kHeartbeatNs);
  ASSERT_TRUE(peer.heartbeat_age.has_value());
  EXPECT_EQ(*peer.heartbeat_age, absl::Milliseconds(5));
  EXPECT_FALSE(peer.stale);
  EXPECT_EQ(peer.guest_to_host_used_bytes, kQueuedBytes);
  EXPECT_EQ(peer.host_to_guest_used_bytes, 0u);
  EXPECT_TRUE(in.peers[1].state.Is(PeerState::kEmpty));
  EXPECT_FALSE(in.peers[1].heartbeat_age.has_value());

  ASSERT_EQ(in.slot_classes.size(), 2u);
  EXPECT_EQ(in.slot_classes[0].slot_size_bytes, 256u);
  EXPECT_EQ(in.slot_classes[0].slot_count, 4u);
  ASSERT_TRUE(in.slot_classes[0].free_slots.ok());
  EXPECT_EQ(*in.slot_classes[0].free_slots, 3u);
  ASSERT_TRUE(in.slot_classes[1].free_slots.ok());
  EXPECT_EQ(*in.slot_classes[1].free_slots, 2u);
}

TEST_F(SegmentInspectorTest, StaleFollowsTheTwiceTheIntervalRule) {
  EXPECT_FALSE(InspectAt(kHeartbeatNs + 2 * kIntervalNs).peers[0].stale);
  EXPECT_TRUE(InspectAt(kHeartbeatNs + 2 * kIntervalNs + 1).peers[0].stale);
}

TEST_F(SegmentInspectorTest, AHeartbeatFromTheFutureHasNoAge) {
  const InspectedPeer peer = InspectAt(kHeartbeatNs - 1).peers[0];

  EXPECT_FALSE(peer.heartbeat_age.has_value());
  EXPECT_FALSE(peer.stale);
}

TEST_F(SegmentInspectorTest, HostGoodbyeIsReported) {
  host_->SetHostGoodbye();

  EXPECT_TRUE(InspectAt(kHeartbeatNs).host_goodbye);
}

TEST_F(SegmentInspectorTest, TextNamesTheFieldsAndListsOnlyOccupiedSlots) {
  const std::string text = InspectionText(InspectAt(kHeartbeatNs + 5'000'000), false);

  EXPECT_TRUE(absl::StrContains(text, path_)) << text;
  EXPECT_TRUE(absl::StrContains(text, "max guests")) << text;
  EXPECT_TRUE(absl::StrContains(text, "heartbeat interval  20ms")) << text;
  EXPECT_TRUE(absl::StrContains(text, "ATTACHED")) << text;
  EXPECT_TRUE(absl::StrContains(text, "5ms")) << text;
  EXPECT_TRUE(absl::StrContains(text, std::to_string(kQueuedBytes))) << text;
  EXPECT_TRUE(absl::StrContains(text, "FREE")) << text;
  EXPECT_FALSE(absl::StrContains(text, "EMPTY")) << text;

  const std::string all = InspectionText(InspectAt(kHeartbeatNs), true);
  EXPECT_TRUE(absl::StrContains(all, "EMPTY")) << all;
}

TEST_F(SegmentInspectorTest, JsonIsOneValidObjectPerLineWithTheApiFieldNames) {
  const std::vector<std::string> lines =
      InspectionJsonLines(InspectAt(kHeartbeatNs + 5'000'000), false);

  ASSERT_EQ(lines.size(), 1u + 1u + 2u);  // segment, one peer, two classes
  for (const std::string& line : lines) EXPECT_EQ(line.find('\n'), std::string::npos) << line;

  const Struct segment = Field(ParseJsonLine(lines[0]), "segment").struct_value();
  EXPECT_EQ(Field(segment, "segment_path").string_value(), path_);
  EXPECT_EQ(Field(segment, "format_version").number_value(), 7);
  EXPECT_EQ(Field(segment, "max_guests").number_value(), 3);
  EXPECT_EQ(Field(segment, "heartbeat_interval").string_value(), "0.020s");
  EXPECT_FALSE(Field(segment, "host_goodbye").bool_value());

  const Struct peer = Field(ParseJsonLine(lines[1]), "peer").struct_value();
  EXPECT_EQ(Field(peer, "peer_id").number_value(), 1);
  EXPECT_EQ(Field(peer, "epoch").number_value(), 1);
  EXPECT_EQ(Field(peer, "state").string_value(), "PEER_STATE_ATTACHED");
  EXPECT_EQ(Field(peer, "last_heartbeat_ns").string_value(), std::to_string(kHeartbeatNs));
  EXPECT_EQ(Field(peer, "heartbeat_age").string_value(), "0.005s");
  EXPECT_FALSE(Field(peer, "stale").bool_value());
  EXPECT_EQ(Field(peer, "guest_to_host_used_bytes").number_value(), kQueuedBytes);

  const Struct slot_class = Field(ParseJsonLine(lines[2]), "slot_class").struct_value();
  EXPECT_EQ(Field(slot_class, "slot_size_bytes").number_value(), 256);
  EXPECT_EQ(Field(slot_class, "free_slots").number_value(), 3);
}

TEST_F(SegmentInspectorTest, ACorruptStateWordIsShownWithItsRawValue) {
  // A hostile guest scribbles on entry 2's state word.
  std::atomic_ref<uint32_t>(reinterpret_cast<shm::PeerEntry*>(host_->base() +
                                                              host_->layout().EntryOffset(1))
                                ->state)
      .store(7, std::memory_order_release);
  const SegmentInspection in = InspectAt(kHeartbeatNs);

  EXPECT_FALSE(in.peers[1].state.valid);
  EXPECT_TRUE(absl::StrContains(InspectionText(in, false), "CORRUPT (raw 7)"));
  const Struct peer = Field(ParseJsonLine(InspectionJsonLines(in, false)[2]), "peer").struct_value();
  EXPECT_EQ(Field(peer, "state").string_value(), "PEER_STATE_CORRUPT");
  EXPECT_EQ(Field(peer, "raw_state").number_value(), 7);
}

TEST_F(SegmentInspectorTest, AFileThatIsNoSegmentIsRefusedNamingThePath) {
  const std::string junk = dir_.File("junk");
  std::ofstream(junk) << std::string(4096, 'x');

  absl::StatusOr<SegmentInspection> in = InspectSegmentFile(junk);

  ASSERT_FALSE(in.ok());
  EXPECT_TRUE(absl::StrContains(in.status().message(), junk)) << in.status();
}

TEST_F(SegmentInspectorTest, ShmhubctlInspectJsonPrintsParseableLinesAndExitsZero) {
  std::ostringstream out;
  std::ostringstream err;
  const char* argv[] = {"shmhubctl", "--json", "inspect", path_.c_str(), "--all"};

  const int status = RunShmhubctl(5, argv, out, err);

  EXPECT_EQ(status, 0) << err.str();
  const std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u + 3u + 2u);  // --all: every peer
  for (const std::string& line : lines) ParseJsonLine(line);
}

TEST_F(SegmentInspectorTest, ShmhubctlInspectOfAMissingFileExitsOneWithTheReason) {
  std::ostringstream out;
  std::ostringstream err;
  const std::string missing = dir_.File("missing");
  const char* argv[] = {"shmhubctl", "inspect", missing.c_str()};

  EXPECT_EQ(RunShmhubctl(3, argv, out, err), 1);
  EXPECT_TRUE(absl::StrContains(err.str(), missing)) << err.str();
  EXPECT_TRUE(out.str().empty());
}

}  // namespace
}  // namespace shmhub::ctl
