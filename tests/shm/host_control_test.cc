// The host application control codec and its Unix-socket transport: record
// bytes, the field rules of each type, and a hostile peer's records and
// descriptors over real socketpairs.
#include "shm/host_control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "shm/le_bytes.h"
#include "shm/shm_error.h"
#include "tests/shm/socket_test_util.h"

namespace shmhub::shm {
namespace {

using socket_test::MemfdWith;
using socket_test::OpenFds;
using socket_test::SendWithFds;

constexpr std::chrono::milliseconds kTimeout{5000};

struct StreamPair {
  UniqueFd daemon;
  UniqueFd host;
};

StreamPair MakeStreamPair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return StreamPair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

std::vector<uint8_t> Raw(uint32_t type, uint32_t peer_id, uint32_t epoch, uint32_t arg) {
  std::vector<uint8_t> out(kHostRecordSize);
  PutLe<uint32_t>(out.data(), type);
  PutLe<uint32_t>(out.data() + 4, peer_id);
  PutLe<uint32_t>(out.data() + 8, epoch);
  PutLe<uint32_t>(out.data() + 12, arg);
  return out;
}

ino_t Inode(int fd) {
  struct stat st = {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

// The next record the host reads, failing the test on an error or timeout.
ReceivedHostRecord MustRead(HostRecordReader& reader, int fd) {
  absl::StatusOr<ReceivedHostRecord> got = reader.ReadOneBefore(fd, DeadlineAfter(kTimeout));
  EXPECT_TRUE(got.ok()) << got.status();
  return got.ok() ? *std::move(got) : ReceivedHostRecord{};
}

TEST(HostControl, RequestIsShh1AndOnlyThatMagicIsAHostRequest) {
  const auto request = EncodeHostRequest();
  EXPECT_EQ(std::vector<uint8_t>(request.begin(), request.end()),
            (std::vector<uint8_t>{0x53, 0x48, 0x48, 0x31}));
  const std::vector<uint8_t> vox = {'V', 'S', 'H', '1'};
  const std::vector<uint8_t> short_magic = {'S', 'H', 'H'};
  EXPECT_TRUE(IsHostRequest(request));
  EXPECT_FALSE(IsHostRequest(vox));
  EXPECT_FALSE(IsHostRequest(short_magic));
}

TEST(HostControl, RecordIsFourLittleEndianWordsTypePeerEpochArg) {
  const auto bytes =
      EncodeHostRecord(PeerRecoveringRecord({7, 0x01020304}, PeerDeparture::kEvicted));
  EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()),
            (std::vector<uint8_t>{4, 0, 0, 0, 7, 0, 0, 0, 4, 3, 2, 1, 3, 0, 0, 0}));
}

TEST(HostControl, EveryValidRecordRoundTripsFromItsSender) {
  const std::vector<std::pair<HostControlSender, HostRecord>> cases = {
      {HostControlSender::kDaemon, RegisteredRecord()},
      {HostControlSender::kDaemon, RefusedRecord(HostRefusal::kAlreadyRegistered)},
      {HostControlSender::kDaemon, RefusedRecord(HostRefusal::kShuttingDown)},
      {HostControlSender::kDaemon, PeerAttachedRecord({1, 0}, 0)},
      {HostControlSender::kDaemon, PeerAttachedRecord({255, 0xFFFFFFFF}, 2)},
      {HostControlSender::kDaemon, PeerRecoveringRecord({3, 9}, PeerDeparture::kLeft)},
      {HostControlSender::kDaemon, PeerRecoveringRecord({3, 9}, PeerDeparture::kVanished)},
      {HostControlSender::kHost, RecoveryReadyRecord({3, 9})},
  };
  for (const auto& [sender, record] : cases) {
    absl::StatusOr<HostRecord> back = DecodeHostRecord(sender, EncodeHostRecord(record));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, record);
  }
  EXPECT_EQ(HostRecordFdCount(RegisteredRecord()), 1u);
  EXPECT_EQ(HostRecordFdCount(PeerAttachedRecord({1, 1}, 2)), 2u);
  EXPECT_EQ(HostRecordFdCount(PeerAttachedRecord({1, 1}, 0)), 0u);
  EXPECT_EQ(HostRecordFdCount(RecoveryReadyRecord({1, 1})), 0u);
  EXPECT_EQ(HostRecordFdCount(PeerHandbackRecord({1, 1}, 2)), 2u);
  EXPECT_EQ(HostRecordFdCount(PeerHandbackRecord({1, 1}, 0)), 0u);
  EXPECT_TRUE(DecodeHostRecord(HostControlSender::kHost,
                               EncodeHostRecord(PeerHandbackRecord({3, 9}, 2)))
                  .ok());
}

TEST(HostControl, HostileRecordsAreRefusedWithTheCheckThatFailed) {
  struct Case {
    HostControlSender sender;
    std::vector<uint8_t> bytes;
    ShmErrc want;
  };
  const HostControlSender daemon = HostControlSender::kDaemon;
  const HostControlSender host = HostControlSender::kHost;
  std::vector<uint8_t> short_record = Raw(1, 0, 0, 1);
  short_record.pop_back();
  std::vector<uint8_t> long_record = Raw(1, 0, 0, 1);
  long_record.push_back(0);
  const std::vector<Case> cases = {
      {daemon, short_record, ShmErrc::kHostRecordTruncated},
      {daemon, long_record, ShmErrc::kHostRecordTruncated},
      {daemon, {}, ShmErrc::kHostRecordTruncated},
      {daemon, Raw(0, 0, 0, 0), ShmErrc::kHostRecordUnknownType},
      {daemon, Raw(7, 1, 1, 0), ShmErrc::kHostRecordUnknownType},
      {daemon, Raw(6, 1, 1, 0), ShmErrc::kHostRecordWrongSender},
      {host, Raw(6, 0, 1, 0), ShmErrc::kHostRecordBadField},
      {host, Raw(6, 1, 1, 1), ShmErrc::kHostRecordBadField},
      {host, Raw(0xFFFFFFFF, 1, 1, 0), ShmErrc::kHostRecordUnknownType},
      {daemon, Raw(5, 1, 1, 0), ShmErrc::kHostRecordWrongSender},
      {host, Raw(3, 1, 1, 0), ShmErrc::kHostRecordWrongSender},
      {host, Raw(1, 0, 0, 1), ShmErrc::kHostRecordWrongSender},
      {daemon, Raw(1, 1, 0, 1), ShmErrc::kHostRecordBadField},
      {daemon, Raw(1, 0, 1, 1), ShmErrc::kHostRecordBadField},
      {daemon, Raw(1, 0, 0, 2), ShmErrc::kHostRecordBadField},
      {daemon, Raw(2, 0, 0, 0), ShmErrc::kHostRecordBadField},
      {daemon, Raw(2, 0, 0, 3), ShmErrc::kHostRecordBadField},
      {daemon, Raw(2, 4, 0, 1), ShmErrc::kHostRecordBadField},
      {daemon, Raw(3, 0, 1, 0), ShmErrc::kHostRecordBadField},
      {daemon, Raw(3, 256, 1, 0), ShmErrc::kHostRecordBadField},
      {daemon, Raw(3, 1, 1, 1), ShmErrc::kHostRecordBadField},
      {daemon, Raw(3, 1, 1, 3), ShmErrc::kHostRecordBadField},
      {daemon, Raw(4, 1, 1, 0), ShmErrc::kHostRecordBadField},
      {daemon, Raw(4, 1, 1, 5), ShmErrc::kHostRecordBadField},
      {daemon, Raw(4, 0, 1, 1), ShmErrc::kHostRecordBadField},
      {host, Raw(5, 0, 1, 0), ShmErrc::kHostRecordBadField},
      {host, Raw(5, 1, 1, 1), ShmErrc::kHostRecordBadField},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    absl::StatusOr<HostRecord> decoded = DecodeHostRecord(cases[i].sender, cases[i].bytes);
    EXPECT_EQ(ShmErrcOf(decoded.status()), cases[i].want)
        << "case " << i << ": " << decoded.status();
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << "case " << i;
  }
}

TEST(HostControl, PeerAttachedDeliversTheSameSocketsItsFdsName) {
  StreamPair pair = MakeStreamPair();
  int doorbell[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, doorbell), 0);
  UniqueFd doorbell_host(doorbell[0]);
  UniqueFd doorbell_guest(doorbell[1]);
  UniqueFd mapping = MemfdWith("mapping control");
  const std::vector<int> fds = {doorbell_host.get(), mapping.get()};
  ASSERT_TRUE(SendHostRecord(pair.daemon.get(), PeerAttachedRecord({4, 11}, 2), fds,
                             DeadlineAfter(kTimeout))
                  .ok());

  HostRecordReader reader(HostControlSender::kDaemon);
  ReceivedHostRecord got = MustRead(reader, pair.host.get());
  EXPECT_EQ(got.record, PeerAttachedRecord({4, 11}, 2));
  ASSERT_EQ(got.fds.size(), 2u);
  EXPECT_EQ(Inode(got.fds[0].get()), Inode(doorbell_host.get()));
  EXPECT_EQ(Inode(got.fds[1].get()), Inode(mapping.get()));
  EXPECT_NE(::fcntl(got.fds[0].get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(HostControl, BackToBackRecordsKeepTheirOwnDescriptors) {
  StreamPair pair = MakeStreamPair();
  UniqueFd a = MemfdWith("a");
  UniqueFd b = MemfdWith("b");
  UniqueFd segment = MemfdWith("segment");
  const std::vector<int> first = {a.get(), b.get()};
  const std::vector<int> second = {b.get(), a.get()};
  const std::vector<int> segment_fds = {segment.get()};
  const Deadline deadline = DeadlineAfter(kTimeout);
  ASSERT_TRUE(SendHostRecord(pair.daemon.get(), RegisteredRecord(), segment_fds, deadline).ok());
  ASSERT_TRUE(
      SendHostRecord(pair.daemon.get(), PeerAttachedRecord({1, 1}, 2), first, deadline).ok());
  ASSERT_TRUE(SendHostRecord(pair.daemon.get(), PeerAttachedRecord({2, 1}, 0), {}, deadline).ok());
  ASSERT_TRUE(
      SendHostRecord(pair.daemon.get(), PeerAttachedRecord({3, 1}, 2), second, deadline).ok());
  ASSERT_TRUE(SendHostRecord(pair.daemon.get(),
                             PeerRecoveringRecord({1, 1}, PeerDeparture::kCrashed), {}, deadline)
                  .ok());

  HostRecordReader reader(HostControlSender::kDaemon);
  ReceivedHostRecord registered = MustRead(reader, pair.host.get());
  ASSERT_EQ(registered.fds.size(), 1u);
  EXPECT_EQ(Inode(registered.fds[0].get()), Inode(segment.get()));
  ReceivedHostRecord one = MustRead(reader, pair.host.get());
  ASSERT_EQ(one.fds.size(), 2u);
  EXPECT_EQ(Inode(one.fds[0].get()), Inode(a.get()));
  ReceivedHostRecord two = MustRead(reader, pair.host.get());
  EXPECT_EQ(two.record.peer_id, 2u);
  EXPECT_TRUE(two.fds.empty());
  ReceivedHostRecord three = MustRead(reader, pair.host.get());
  ASSERT_EQ(three.fds.size(), 2u);
  EXPECT_EQ(Inode(three.fds[0].get()), Inode(b.get()));
  EXPECT_EQ(MustRead(reader, pair.host.get()).record,
            PeerRecoveringRecord({1, 1}, PeerDeparture::kCrashed));
}

TEST(HostControl, RecordSplitAcrossWritesIsReassembledAndNothingIsReadEarly) {
  StreamPair pair = MakeStreamPair();
  const auto bytes = EncodeHostRecord(RecoveryReadyRecord({9, 2}));
  HostRecordReader reader(HostControlSender::kHost);
  absl::StatusOr<std::optional<ReceivedHostRecord>> none = reader.ReadOne(pair.daemon.get());
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  ASSERT_EQ(SendWithFds(pair.host.get(), absl::MakeConstSpan(bytes.data(), 5), {}), 5);
  absl::StatusOr<std::optional<ReceivedHostRecord>> partial = reader.ReadOne(pair.daemon.get());
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_FALSE(partial->has_value());

  ASSERT_EQ(SendWithFds(pair.host.get(), absl::MakeConstSpan(bytes.data() + 5, 11), {}), 11);
  absl::StatusOr<std::optional<ReceivedHostRecord>> whole = reader.ReadOne(pair.daemon.get());
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE(whole->has_value());
  EXPECT_EQ((*whole)->record, RecoveryReadyRecord({9, 2}));
}

TEST(HostControl, DescriptorsOnARecordThatCarriesNoneAreRefusedAndClosed) {
  StreamPair pair = MakeStreamPair();
  const std::set<int> before = OpenFds();
  {
    UniqueFd smuggled = MemfdWith("x");
    const auto bytes = EncodeHostRecord(RecoveryReadyRecord({1, 1}));
    const std::vector<int> fds = {smuggled.get()};
    ASSERT_EQ(SendWithFds(pair.host.get(), bytes, fds), 16);
  }
  HostRecordReader reader(HostControlSender::kHost);
  absl::StatusOr<std::optional<ReceivedHostRecord>> got = reader.ReadOne(pair.daemon.get());
  EXPECT_EQ(ShmErrcOf(got.status()), ShmErrc::kHostRecordBadFdCount) << got.status();
  EXPECT_EQ(OpenFds(), before);
}

TEST(HostControl, PeerAttachedWithoutItsAnnouncedFdsIsRefused) {
  StreamPair pair = MakeStreamPair();
  UniqueFd only_one = MemfdWith("x");
  const std::vector<int> fds = {only_one.get()};
  ASSERT_EQ(SendWithFds(pair.daemon.get(), EncodeHostRecord(PeerAttachedRecord({1, 1}, 2)), fds),
            16);
  HostRecordReader reader(HostControlSender::kDaemon);
  EXPECT_EQ(ShmErrcOf(reader.ReadOne(pair.host.get()).status()), ShmErrc::kHostRecordBadFdCount);
}

TEST(HostControl, DescriptorsArrivingAfterPartOfTheirRecordWasReadAreRefusedAndClosed) {
  StreamPair pair = MakeStreamPair();
  const std::set<int> before = OpenFds();
  const auto bytes = EncodeHostRecord(PeerAttachedRecord({1, 1}, 2));
  HostRecordReader reader(HostControlSender::kDaemon);
  ASSERT_EQ(SendWithFds(pair.daemon.get(), absl::MakeConstSpan(bytes.data(), 4), {}), 4);
  absl::StatusOr<std::optional<ReceivedHostRecord>> partial = reader.ReadOne(pair.host.get());
  ASSERT_TRUE(partial.ok()) << partial.status();
  ASSERT_FALSE(partial->has_value());
  {
    UniqueFd a = MemfdWith("a");
    UniqueFd b = MemfdWith("b");
    const std::vector<int> fds = {a.get(), b.get()};
    ASSERT_EQ(SendWithFds(pair.daemon.get(), absl::MakeConstSpan(bytes.data() + 4, 12), fds), 12);
  }
  absl::StatusOr<std::optional<ReceivedHostRecord>> got = reader.ReadOne(pair.host.get());
  EXPECT_EQ(ShmErrcOf(got.status()), ShmErrc::kHostRecordBadFdCount) << got.status();
  EXPECT_EQ(OpenFds(), before);
}

TEST(HostControl, MoreDescriptorsThanTheReaderTakesIsControlTruncated) {
  StreamPair pair = MakeStreamPair();
  const std::set<int> before = OpenFds();
  {
    std::vector<UniqueFd> owned;
    std::vector<int> fds;
    for (int i = 0; i < 8; ++i) {
      owned.push_back(MemfdWith("x"));
      fds.push_back(owned.back().get());
    }
    ASSERT_EQ(SendWithFds(pair.daemon.get(), EncodeHostRecord(PeerAttachedRecord({1, 1}, 2)), fds),
              16);
  }
  HostRecordReader reader(HostControlSender::kDaemon);
  EXPECT_EQ(ShmErrcOf(reader.ReadOne(pair.host.get()).status()),
            ShmErrc::kHostRecordControlTruncated);
  EXPECT_EQ(OpenFds(), before);
}

TEST(HostControl, HangUpIsClosedAtARecordBoundaryAndTruncatedInsideOne) {
  {
    StreamPair pair = MakeStreamPair();
    pair.daemon.Reset();
    HostRecordReader reader(HostControlSender::kDaemon);
    absl::Status status = reader.ReadOne(pair.host.get()).status();
    EXPECT_EQ(ShmErrcOf(status), ShmErrc::kHostControlClosed) << status;
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  }
  {
    StreamPair pair = MakeStreamPair();
    const auto bytes = EncodeHostRecord(RecoveryReadyRecord({1, 1}));
    ASSERT_EQ(SendWithFds(pair.host.get(), absl::MakeConstSpan(bytes.data(), 9), {}), 9);
    pair.host.Reset();
    HostRecordReader reader(HostControlSender::kHost);
    absl::StatusOr<std::optional<ReceivedHostRecord>> got = reader.ReadOne(pair.daemon.get());
    EXPECT_EQ(ShmErrcOf(got.status()), ShmErrc::kHostRecordTruncated) << got.status();
  }
}

TEST(HostControl, ReadOneBeforeGivesUpAtTheDeadline) {
  StreamPair pair = MakeStreamPair();
  HostRecordReader reader(HostControlSender::kDaemon);
  absl::StatusOr<ReceivedHostRecord> got =
      reader.ReadOneBefore(pair.host.get(), DeadlineAfter(std::chrono::milliseconds(20)));
  EXPECT_EQ(ShmErrcOf(got.status()), ShmErrc::kIo) << got.status();
}

TEST(HostControl, SendRefusesAWrongFdCountAndReportsAClosedPeer) {
  StreamPair pair = MakeStreamPair();
  UniqueFd extra = MemfdWith("x");
  const std::vector<int> one = {extra.get()};
  size_t sent = 0;
  EXPECT_EQ(ShmErrcOf(SendHostRecordSome(pair.host.get(), RecoveryReadyRecord({1, 1}), one, &sent)
                          .status()),
            ShmErrc::kHostRecordBadFdCount);
  EXPECT_EQ(ShmErrcOf(SendHostRecordSome(pair.daemon.get(), RegisteredRecord(), {}, &sent)
                          .status()),
            ShmErrc::kHostRecordBadFdCount);
  EXPECT_EQ(sent, 0u);

  pair.daemon.Reset();
  absl::StatusOr<bool> done =
      SendHostRecordSome(pair.host.get(), RecoveryReadyRecord({1, 1}), {}, &sent);
  EXPECT_EQ(ShmErrcOf(done.status()), ShmErrc::kHostControlClosed) << done.status();
}

TEST(HostControl, SendOnAFullSocketReportsNotDoneAndFinishesOnceDrained) {
  StreamPair pair = MakeStreamPair();
  ASSERT_EQ(::fcntl(pair.daemon.get(), F_SETFL, O_NONBLOCK), 0);
  const HostRecord record = PeerRecoveringRecord({2, 5}, PeerDeparture::kLeft);
  size_t records = 0;
  size_t sent = 0;
  // Fill the socket; the last record may be left partly sent.
  while (true) {
    absl::StatusOr<bool> done = SendHostRecordSome(pair.daemon.get(), record, {}, &sent);
    ASSERT_TRUE(done.ok()) << done.status();
    if (!*done) break;
    ++records;
    sent = 0;
    ASSERT_LT(records, 1'000'000u) << "the socket never filled";
  }
  HostRecordReader reader(HostControlSender::kDaemon);
  size_t read = 0;
  bool finished = sent == kHostRecordSize;
  while (read < records + 1) {
    absl::StatusOr<std::optional<ReceivedHostRecord>> got = reader.ReadOne(pair.host.get());
    ASSERT_TRUE(got.ok()) << got.status();
    if (got->has_value()) {
      EXPECT_EQ((*got)->record, record);
      ++read;
      continue;
    }
    ASSERT_FALSE(finished) << "the socket is drained but a record is missing";
    absl::StatusOr<bool> done = SendHostRecordSome(pair.daemon.get(), record, {}, &sent);
    ASSERT_TRUE(done.ok()) << done.status();
    finished = *done;
  }
  EXPECT_EQ(read, records + 1);
}

}  // namespace
}  // namespace shmhub::shm
