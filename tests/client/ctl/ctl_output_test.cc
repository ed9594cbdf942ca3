// What shmhubctl prints for API messages: --json lines (proto field names,
// enums by name, one line, valid JSON) and the text of `watch`.
#include <string>

#include "absl/strings/match.h"
#include "client/ctl/json_line.h"
#include "client/ctl/watch_command.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::ctl {
namespace {

using google::protobuf::util::TimeUtil;

v1::WatchEventsResponse CrashEvent() {
  v1::WatchEventsResponse response;
  v1::PeerEvent& event = *response.mutable_event();
  event.set_sequence(42);
  event.set_hub_instance_id("i-1");
  *event.mutable_time() = TimeUtil::NanosecondsToTimestamp(1'700'000'000'123'000'000);
  event.set_peer_id(3);
  event.set_epoch(7);
  event.set_kind(v1::EVENT_KIND_CRASHED);
  event.set_detector(v1::DETECTOR_HEARTBEAT);
  *event.mutable_heartbeat_age() = TimeUtil::MillisecondsToDuration(1250);
  return response;
}

TEST(ProtoJsonLineTest, UsesProtoFieldNamesEnumNamesAndOneLine) {
  const std::string line = ProtoJsonLine(CrashEvent());

  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  for (const char* expected :
       {"\"event\":{", "\"sequence\":\"42\"", "\"hub_instance_id\":\"i-1\"", "\"peer_id\":3",
        "\"epoch\":7", "\"kind\":\"EVENT_KIND_CRASHED\"", "\"detector\":\"DETECTOR_HEARTBEAT\"",
        "\"heartbeat_age\":\"1.250s\"", "\"reason\":\"\""}) {
    EXPECT_TRUE(absl::StrContains(line, expected)) << expected << " in " << line;
  }
  google::protobuf::Struct parsed;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
}

TEST(ProtoJsonLineTest, PrintsZeroValuedFieldsSoScriptsNeedNoDefaults) {
  v1::Peer peer;
  peer.set_peer_id(1);

  const std::string line = ProtoJsonLine(peer);

  EXPECT_TRUE(absl::StrContains(line, "\"epoch\":0")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"stale\":false")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"state\":\"PEER_STATE_UNSPECIFIED\"")) << line;
}

TEST(JsonLineTest, EscapesStringsAndQuotes64BitIntegers) {
  const std::string line = JsonLine()
                               .AddString("text", "a\"b\\c\nd\x01")
                               .AddUint64("big", 18446744073709551615u)
                               .AddUint32("small", 7)
                               .AddBool("flag", true)
                               .str();

  EXPECT_EQ(line,
            "{\"text\":\"a\\\"b\\\\c\\nd\\u0001\",\"big\":\"18446744073709551615\","
            "\"small\":7,\"flag\":true}");
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok());
  EXPECT_EQ(parsed.fields().at("text").string_value(), "a\"b\\c\nd\x01");
}

TEST(WatchResponseTextTest, AnEventIsOneLineWithItsDetails) {
  const std::string text = WatchResponseText(CrashEvent());

  EXPECT_EQ(text,
            "42 2023-11-14T22:13:20.123Z CRASHED peer_id=3 epoch=7 detector=HEARTBEAT "
            "heartbeat_age=1.25s\n");
}

TEST(WatchResponseTextTest, ResyncIsShownAndProgressIsNot) {
  v1::WatchEventsResponse resync;
  resync.mutable_resync()->set_reason(v1::Resync::REASON_HISTORY_PRUNED);
  resync.mutable_resync()->set_oldest_available_sequence(100);
  resync.mutable_resync()->set_message("events 1..99 are gone");
  v1::WatchEventsResponse progress;
  progress.mutable_progress()->set_sequence(5);

  EXPECT_EQ(WatchResponseText(resync),
            "RESYNC reason=HISTORY_PRUNED oldest_available_sequence=100: events 1..99 are gone\n");
  EXPECT_EQ(WatchResponseText(progress), "");
}

TEST(WatchResponseTextTest, ASnapshotShowsItsOccupiedSlots) {
  v1::WatchEventsResponse snapshot;
  snapshot.mutable_snapshot()->set_sequence(9);
  snapshot.mutable_snapshot()->set_hub_instance_id("i-1");
  v1::Peer* peer = snapshot.mutable_snapshot()->add_peers();
  peer->set_peer_id(2);
  peer->set_state(v1::PEER_STATE_ATTACHED);
  peer->set_unmonitored(true);
  v1::Peer* empty = snapshot.mutable_snapshot()->add_peers();
  empty->set_peer_id(3);
  empty->set_state(v1::PEER_STATE_EMPTY);

  const std::string text = WatchResponseText(snapshot);

  EXPECT_TRUE(absl::StartsWith(text, "snapshot sequence=9 hub_instance_id=i-1 peers=2 occupied=1\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "ATTACHED")) << text;
  EXPECT_FALSE(absl::StrContains(text, "EMPTY")) << text;
  EXPECT_TRUE(absl::StrContains(text, "none (unmonitored)")) << text;
}

}  // namespace
}  // namespace shmhub::ctl
