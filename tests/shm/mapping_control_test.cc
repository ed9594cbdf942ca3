#include "shm/mapping_control.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "shm/mapping_table.h"
#include "shm/shm_error.h"
#include "tests/shm/socket_test_util.h"

namespace shmhub::shm {
namespace {

using socket_test::MemfdWith;
using socket_test::OpenFds;
using socket_test::SendWithFds;
using socket_test::SignalCounter;

struct ControlPair {
  UniqueFd host;
  UniqueFd guest;
};

ControlPair MakePair() {
  absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = CreateMappingControlPair();
  EXPECT_TRUE(pair.ok()) << pair.status();
  return ControlPair{std::move(pair->first), std::move(pair->second)};
}

std::vector<uint8_t> Encoded(const MappingControlMessage& message) {
  auto bytes = EncodeMappingControl(message);
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

std::string AsString(absl::Span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

ino_t Inode(int fd) {
  struct stat st = {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

TEST(MappingControl, C_M1_EncodingMatchesTheSpecVector) {
  const MappingControlMessage message{0xDEADBEEF, 0xCAFEBABE, 0x123456789ABCDEF0};
  const std::vector<uint8_t> expected = {0xef, 0xbe, 0xad, 0xde, 0xbe, 0xba, 0xfe, 0xca,
                                         0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12};
  EXPECT_EQ(Encoded(message), expected);

  absl::StatusOr<MappingControlMessage> decoded = DecodeMappingControl(expected);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, message);

  EXPECT_EQ(ShmErrcOf(DecodeMappingControl(absl::MakeConstSpan(expected).subspan(0, 15)).status()),
            ShmErrc::kMappingInvalidLength);
  std::vector<uint8_t> longer = expected;
  longer.push_back(0);
  EXPECT_EQ(ShmErrcOf(DecodeMappingControl(longer).status()), ShmErrc::kMappingInvalidLength);
}

TEST(MappingControl, C_M2_SendAndReceiveOneFdPreservesMetadataAndGivesAUsableNewFd) {
  ControlPair pair = MakePair();
  UniqueFd region = MemfdWith("payload!");
  ASSERT_TRUE(region.valid());
  const MappingControlMessage message{7, 3, 8};
  ASSERT_TRUE(SendMappingControl(pair.host.get(), message, region.get()).ok());

  absl::StatusOr<std::optional<ReceivedMapping>> received = ReceiveMappingControl(pair.guest.get());
  ASSERT_TRUE(received.ok()) << received.status();
  ASSERT_TRUE(received->has_value());
  const ReceivedMapping& mapping = **received;
  EXPECT_EQ(mapping.message, message);
  ASSERT_TRUE(mapping.region_fd.valid());
  EXPECT_NE(mapping.region_fd.get(), region.get());
  EXPECT_EQ(Inode(mapping.region_fd.get()), Inode(region.get()));
  struct stat st = {};
  ASSERT_EQ(::fstat(mapping.region_fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 8);
  EXPECT_NE(::fcntl(mapping.region_fd.get(), F_GETFD) & FD_CLOEXEC, 0);  // MSG_CMSG_CLOEXEC
}

TEST(MappingControl, C_M3_ReceiveWithNothingQueuedReportsNothing) {
  ControlPair pair = MakePair();
  absl::StatusOr<std::optional<ReceivedMapping>> received = ReceiveMappingControl(pair.guest.get());
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_FALSE(received->has_value());
}

TEST(MappingControl, C_M4_MessageWithoutFdReportsNoFd) {
  ControlPair pair = MakePair();
  ASSERT_EQ(SendWithFds(pair.host.get(), Encoded({1, 0, 4096}), {}), 16);
  absl::StatusOr<std::optional<ReceivedMapping>> received = ReceiveMappingControl(pair.guest.get());
  EXPECT_EQ(ShmErrcOf(received.status()), ShmErrc::kMappingNoFd) << received.status();
}

TEST(MappingControl, C_M5_TwoFdsReportTruncatedAndBothAreClosed) {
  ControlPair pair = MakePair();
  UniqueFd a = MemfdWith("a");
  UniqueFd b = MemfdWith("b");
  const int two[] = {a.get(), b.get()};
  ASSERT_EQ(SendWithFds(pair.host.get(), Encoded({1, 0, 1}), two), 16);

  const std::set<int> before = OpenFds();
  absl::StatusOr<std::optional<ReceivedMapping>> received = ReceiveMappingControl(pair.guest.get());
  EXPECT_EQ(ShmErrcOf(received.status()), ShmErrc::kMappingControlTruncated) << received.status();
  EXPECT_EQ(OpenFds(), before);

  // Three fds do not even fit the control buffer (MSG_CTRUNC): same verdict.
  const int three[] = {a.get(), b.get(), a.get()};
  ASSERT_EQ(SendWithFds(pair.host.get(), Encoded({1, 0, 1}), three), 16);
  received = ReceiveMappingControl(pair.guest.get());
  EXPECT_EQ(ShmErrcOf(received.status()), ShmErrc::kMappingControlTruncated) << received.status();
  EXPECT_EQ(OpenFds(), before);
}

TEST(MappingControl, C_M6_WrongLengthReportsInvalidLengthAndClosesTheFd) {
  ControlPair pair = MakePair();
  UniqueFd region = MemfdWith("r");
  const int one[] = {region.get()};
  const std::set<int> before = OpenFds();
  for (size_t length : {size_t{96}, size_t{15}, size_t{17}, size_t{300}}) {
    const std::vector<uint8_t> bytes(length, 0xAB);
    ASSERT_EQ(SendWithFds(pair.host.get(), bytes, one), static_cast<ssize_t>(length));
    absl::StatusOr<std::optional<ReceivedMapping>> received =
        ReceiveMappingControl(pair.guest.get());
    EXPECT_EQ(ShmErrcOf(received.status()), ShmErrc::kMappingInvalidLength)
        << length << ": " << received.status();
    EXPECT_EQ(OpenFds(), before) << length;
  }
}

TEST(MappingControl, C_M7_SocketReadsAValidMessageAfterAMalformedOneButTheLinkEnds) {
  UniqueFd region = MemfdWith("0123456789");
  const MappingControlMessage valid{5, 0, 10};

  // The primitive: stateless, the next message is fine.
  {
    ControlPair pair = MakePair();
    ASSERT_EQ(SendWithFds(pair.host.get(), Encoded({4, 0, 10}), {}), 16);
    ASSERT_TRUE(SendMappingControl(pair.host.get(), valid, region.get()).ok());
    EXPECT_EQ(ShmErrcOf(ReceiveMappingControl(pair.guest.get()).status()), ShmErrc::kMappingNoFd);
    absl::StatusOr<std::optional<ReceivedMapping>> next = ReceiveMappingControl(pair.guest.get());
    ASSERT_TRUE(next.ok()) << next.status();
    ASSERT_TRUE(next->has_value());
    EXPECT_EQ((*next)->message, valid);
  }

  // The link: the same two messages, and nothing resolves after the first.
  {
    ControlPair pair = MakePair();
    ASSERT_EQ(SendWithFds(pair.host.get(), Encoded({4, 0, 10}), {}), 16);
    ASSERT_TRUE(SendMappingControl(pair.host.get(), valid, region.get()).ok());
    MappingReceiver receiver(std::move(pair.guest));
    absl::StatusOr<absl::Span<const uint8_t>> resolved = receiver.Resolve(5, 0, 0, 4);
    EXPECT_EQ(ShmErrcOf(resolved.status()), ShmErrc::kMappingNoFd) << resolved.status();
    EXPECT_EQ(receiver.table().size(), 0u);
    ASSERT_TRUE(SendMappingControl(pair.host.get(), {6, 0, 10}, region.get()).ok());
    EXPECT_EQ(ShmErrcOf(receiver.Poll()), ShmErrc::kMappingNoFd);
    EXPECT_EQ(ShmErrcOf(receiver.Resolve(6, 0, 0, 4).status()), ShmErrc::kMappingNoFd);
    EXPECT_EQ(receiver.table().size(), 0u);
  }

  // Control: without the malformed message the same receiver resolves it.
  {
    ControlPair pair = MakePair();
    ASSERT_TRUE(SendMappingControl(pair.host.get(), valid, region.get()).ok());
    MappingReceiver receiver(std::move(pair.guest));
    absl::StatusOr<absl::Span<const uint8_t>> resolved = receiver.Resolve(5, 0, 2, 4);
    ASSERT_TRUE(resolved.ok()) << resolved.status();
    EXPECT_EQ(AsString(*resolved), "2345");
  }
}

TEST(MappingControl, C_M8_ResolutionReportsUnknownKeyOverflowAndOutOfBounds) {
  MappingTable table;
  UniqueFd region = MemfdWith("ABCDEFGH");
  ASSERT_EQ(*table.Attach({7, 3, 8}, std::move(region)), AttachResult::kAttached);

  EXPECT_EQ(ShmErrcOf(table.Resolve(8, 3, 0, 1).status()), ShmErrc::kMappingUnknownKey);
  EXPECT_EQ(ShmErrcOf(table.Resolve(7, 4, 0, 1).status()), ShmErrc::kMappingUnknownKey);
  EXPECT_EQ(ShmErrcOf(table.Resolve(7, 3, std::numeric_limits<uint64_t>::max(), 2).status()),
            ShmErrc::kMappingOverflow);
  EXPECT_EQ(ShmErrcOf(table.Resolve(7, 3, 7, 2).status()), ShmErrc::kMappingOutOfBounds);

  absl::StatusOr<absl::Span<const uint8_t>> last = table.Resolve(7, 3, 6, 2);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(AsString(*last), "GH");
  absl::StatusOr<absl::Span<const uint8_t>> empty_at_end = table.Resolve(7, 3, 8, 0);
  ASSERT_TRUE(empty_at_end.ok()) << empty_at_end.status();
  EXPECT_TRUE(empty_at_end->empty());
}

TEST(MappingControl, C_M9_DuplicateAttachIsIgnoredAndTheFirstMappingKept) {
  MappingTable table;
  ASSERT_EQ(*table.Attach({7, 3, 8}, MemfdWith("AAAAAAAA")), AttachResult::kAttached);
  const std::set<int> before = OpenFds();
  UniqueFd second = MemfdWith("BBBBBBBB");
  ASSERT_TRUE(second.valid());
  EXPECT_EQ(*table.Attach({7, 3, 8}, std::move(second)), AttachResult::kDuplicate);
  EXPECT_EQ(OpenFds(), before);  // the ignored region's fd was closed
  EXPECT_EQ(table.size(), 1u);
  absl::StatusOr<absl::Span<const uint8_t>> bytes = table.Resolve(7, 3, 0, 8);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(AsString(*bytes), "AAAAAAAA");
}

TEST(MappingControl, AttachRefusesARegionShorterThanMappingLengthAndReceiverSkipsIt) {
  MappingTable table;
  EXPECT_EQ(ShmErrcOf(table.Attach({1, 0, 9}, MemfdWith("12345678")).status()),
            ShmErrc::kMappingOutOfBounds);
  EXPECT_EQ(table.size(), 0u);

  // At link level a well-formed but unmappable message is skipped, not fatal.
  ControlPair pair = MakePair();
  UniqueFd short_region = MemfdWith("1234");
  UniqueFd good_region = MemfdWith("12345678");
  ASSERT_TRUE(SendMappingControl(pair.host.get(), {1, 0, 9}, short_region.get()).ok());
  ASSERT_TRUE(SendMappingControl(pair.host.get(), {2, 0, 8}, good_region.get()).ok());
  MappingReceiver receiver(std::move(pair.guest));
  ASSERT_TRUE(receiver.Poll().ok());
  EXPECT_EQ(receiver.skipped(), 1u);
  EXPECT_EQ(ShmErrcOf(receiver.Resolve(1, 0, 0, 1).status()), ShmErrc::kMappingUnknownKey);
  EXPECT_TRUE(receiver.Resolve(2, 0, 0, 8).ok());
}

TEST(MappingControl, SendToClosedPeerReportsPeerClosedWithoutSigpipe) {
  SignalCounter<SIGPIPE> sigpipes;
  ControlPair pair = MakePair();
  pair.guest.Reset();
  UniqueFd region = MemfdWith("x");
  absl::Status sent = SendMappingControl(pair.host.get(), {1, 0, 1}, region.get());
  EXPECT_EQ(ShmErrcOf(sent), ShmErrc::kMappingPeerClosed) << sent;
  EXPECT_EQ(sigpipes.count(), 0);
}

}  // namespace
}  // namespace shmhub::shm
