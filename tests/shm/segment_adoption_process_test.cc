// A host taking over the segment an earlier host left (format §15): the
// path's lock (PathLock) dies with its holder however it dies, even while
// other processes hold descriptors of the segment it handed out; Adopt
// keeps every byte of the segment; a replaced segment's guests are told to
// leave and its epochs never come back. Real child processes, real SIGKILL.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shm/path_lock.h"
#include "shm/scm_rights.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "shm/unique_fd.h"
#include "tests/testing/child_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::shm {
namespace {

using ::shmhub::testing::ChildProcess;
using ::shmhub::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

SegmentConfig SmallConfig() {
  SegmentConfig c;
  c.max_guests = 3;
  c.ring_capacity = 1000;
  c.classes = {{100, 3}, {300, 5}};
  c.max_payload_size = 4096;
  c.heartbeat_interval_ns = 100'000'000;
  return c;
}

// Receives one descriptor over `socket` within 10 s; invalid on failure.
UniqueFd ReceiveFd(int socket) {
  struct pollfd p = {socket, POLLIN, 0};
  if (::poll(&p, 1, 10'000) != 1) return UniqueFd();
  uint8_t byte = 0;
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(1)];
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  if (::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC) != 1) return UniqueFd();
  std::vector<UniqueFd> fds = UnpackScmRights(msg);
  return fds.size() == 1 ? std::move(fds[0]) : UniqueFd();
}

// A host in a child process that creates the segment at `path`, attaches a
// guest to slot 1, hands the segment's descriptor to the parent over
// `socket` (as shmhubd hands it to guests) and then waits to be killed.
int HostThatHandsOutItsSegment(const std::string& path, int socket) {
  absl::StatusOr<std::unique_ptr<Segment>> host = Segment::Create(path, SmallConfig());
  if (!host.ok()) return 1;
  if (!(*host)->peers().AttachFirstFree().ok()) return 2;
  uint8_t byte = 1;
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(1)];
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const int fd = (*host)->fd();
  PackScmRights(absl::MakeConstSpan(&fd, 1), absl::MakeSpan(control), &msg);
  if (::sendmsg(socket, &msg, MSG_NOSIGNAL) != 1) return 3;
  for (;;) ::pause();
}

TEST(SegmentAdoption, AHostKilledWhileOthersHoldItsSegmentDescriptorLeavesThePathFree) {
  TempDir dir;
  const std::string path = dir.File("seg");
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd ours(pair[0]);
  ChildProcess host([&] {
    ::close(pair[0]);
    return HostThatHandsOutItsSegment(path, pair[1]);
  });
  ::close(pair[1]);
  // What a guest (or a SIGSTOPped host application) holds: the segment's
  // own descriptor, received from the host.
  UniqueFd handed_out = ReceiveFd(ours.get());
  ASSERT_TRUE(handed_out.valid());
  absl::StatusOr<PathLock> refused = PathLock::Acquire(path);
  EXPECT_EQ(ShmErrcOf(refused.status()), ShmErrc::kLiveSegment) << "the host is still alive";

  host.Signal(SIGKILL);
  ASSERT_EQ(host.Wait(), 128 + SIGKILL);
  absl::StatusOr<PathLock> lock = PathLock::Acquire(path);
  ASSERT_TRUE(lock.ok()) << lock.status() << ": a handed-out descriptor kept the path live";
  absl::StatusOr<std::unique_ptr<Segment>> adopted = Segment::Adopt(path, &*lock);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_TRUE((*adopted)->is_host());
  EXPECT_FALSE(lock->held()) << "the lock moved into the adopted segment";
  // The guest's occupancy is still there, at its epoch.
  const PeerPair pair1 = (*adopted)->peers().Entry(1)->LoadPair();
  EXPECT_TRUE(pair1.first.Is(PeerState::kAttached));
  EXPECT_EQ(pair1.second, 1u);
  // And it is the very file the guest maps.
  struct stat theirs {};
  struct stat mine {};
  ASSERT_EQ(::fstat(handed_out.get(), &theirs), 0);
  ASSERT_EQ(::fstat((*adopted)->fd(), &mine), 0);
  EXPECT_EQ(theirs.st_ino, mine.st_ino);
}

TEST(SegmentAdoption, AnAdoptedSegmentKeepsItsFileWhenToldToAndDropsItsLockEitherWay) {
  TempDir dir;
  const std::string path = dir.File("seg");
  {
    auto first = Segment::Create(path, SmallConfig());
    ASSERT_TRUE(first.ok()) << first.status();
    (*first)->KeepFileForNextHost();
  }
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0) << "a kept file stays for the next host";
  EXPECT_NE(::lstat((path + ".lock").c_str(), &st), 0) << "the lock file does not";
  absl::StatusOr<PathLock> lock = PathLock::Acquire(path);
  ASSERT_TRUE(lock.ok()) << lock.status();
  absl::StatusOr<std::unique_ptr<Segment>> adopted = Segment::Adopt(path, &*lock);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_THAT((*adopted)->GeometryDifferences(SmallConfig()), IsEmpty());
  adopted->reset();
  EXPECT_NE(::lstat(path.c_str(), &st), 0) << "a host that keeps nothing removes the file";
}

TEST(SegmentAdoption, NoFileToAdoptIsNotInitialisedAndKeepsTheLock) {
  TempDir dir;
  absl::StatusOr<PathLock> lock = PathLock::Acquire(dir.File("seg"));
  ASSERT_TRUE(lock.ok()) << lock.status();
  absl::StatusOr<std::unique_ptr<Segment>> adopted = Segment::Adopt(dir.File("seg"), &*lock);
  EXPECT_EQ(ShmErrcOf(adopted.status()), ShmErrc::kNotInitialised) << adopted.status();
  EXPECT_TRUE(lock->held());
}

TEST(SegmentAdoption, GeometryDifferencesNameEachSettingWithBothValues) {
  TempDir dir;
  auto host = Segment::Create(dir.File("seg"), SmallConfig());
  ASSERT_TRUE(host.ok()) << host.status();
  SegmentConfig wanted = SmallConfig();
  wanted.max_guests = 4;
  wanted.classes = {{100, 3}};
  wanted.heartbeat_interval_ns = 50'000'000;
  EXPECT_THAT(
      (*host)->GeometryDifferences(wanted),
      ElementsAre(AllOf(Field(&GeometryDifference::field, "max_guests"),
                        Field(&GeometryDifference::found, "3"),
                        Field(&GeometryDifference::wanted, "4")),
                  AllOf(Field(&GeometryDifference::field, "slot classes"),
                        Field(&GeometryDifference::found, "100:3,300:5"),
                        Field(&GeometryDifference::wanted, "100:3")),
                  Field(&GeometryDifference::field, "heartbeat_interval_ns")));
}

TEST(SegmentAdoption, RetiringASegmentRaisesHostGoodbyeForItsGuestsAndTouchesNothingElse) {
  TempDir dir;
  const std::string path = dir.File("seg");
  auto host = Segment::Create(path, SmallConfig());
  ASSERT_TRUE(host.ok()) << host.status();
  auto guest = Segment::Attach(path);
  ASSERT_TRUE(guest.ok()) << guest.status();
  std::vector<uint8_t> before((*guest)->base() + 128, (*guest)->base() + (*guest)->mapped_size());
  RetireSegmentFile(path);
  EXPECT_TRUE((*guest)->HostGoodbye());
  EXPECT_EQ(std::memcmp(before.data(), (*guest)->base() + 128, before.size()), 0);
  // Not a segment: left alone.
  const std::string other = dir.File("other");
  const int fd = ::open(other.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> junk(4096, 0x5A);
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  RetireSegmentFile(other);
  std::vector<uint8_t> after(junk.size());
  ASSERT_EQ(::pread(fd, after.data(), after.size(), 0), static_cast<ssize_t>(after.size()));
  EXPECT_EQ(after, junk);
  ::close(fd);
  RetireSegmentFile(dir.File("missing"));
}

TEST(SegmentAdoption, ANewSegmentStartsEachSlotAtItsInitialEpochSoTheNextTakeExceedsIt) {
  TempDir dir;
  SegmentConfig c = SmallConfig();
  c.initial_epochs = {7, 0, 41};
  auto host = Segment::Create(dir.File("seg"), c);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ((*host)->peers().Entry(1)->Epoch(), 7u);
  EXPECT_EQ((*host)->peers().Entry(2)->Epoch(), 0u);
  EXPECT_EQ((*host)->peers().Entry(3)->Epoch(), 41u);
  absl::StatusOr<Occupancy> taken = (*host)->peers().ReserveFirstFree();
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(*taken, (Occupancy{1, 8}));
}

}  // namespace
}  // namespace shmhub::shm
