// GuestLink for a guest that bootstrapped over a real shmhubd's local socket:
// the link gets the daemon's doorbell and mapping-control socket, carries
// frames to and from a HostLink on this process's own mapping of the
// daemon's segment, and when the daemon is SIGKILLed the doorbell hangs up
// and the guest's blocked Receive fails with UNAVAILABLE long before its
// deadline. (The host application's registration is not used here: the
// HostLink has no doorbell, so the guest's waits fall back to re-checks.)
#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/guest/guest.h"
#include "client/guest/guest_link.h"
#include "client/host/host_link.h"
#include "gtest/gtest.h"
#include "shm/segment.h"
#include "tests/e2e/running_hub.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::testing::RunningHub;
using ::shmhub::testing::StartShmhubd;
using ::shmhub::testing::TempDir;

std::vector<uint8_t> Payload(uint8_t seed, size_t size) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
  return bytes;
}

std::vector<uint8_t> Copy(absl::Span<const uint8_t> span) {
  return std::vector<uint8_t>(span.begin(), span.end());
}

TEST(GuestLinkProcessTest, BootstrappedGuestLinkCarriesFramesAndFailsWhenTheDaemonDies) {
  TempDir dir;
  absl::StatusOr<RunningHub> daemon =
      StartShmhubd(dir, {.flags = {"--max_guests=2", "--ring_bytes=65536",
                                   "--slot_classes=256:64,4096:16", "--max_payload_size=1048576"}});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string segment_path = daemon->endpoints.segment_path;

  client::GuestOptions options;
  options.socket_path = daemon->endpoints.socket_path;
  options.heartbeat = false;
  absl::StatusOr<std::unique_ptr<client::Guest>> guest = client::Guest::Attach(options);
  ASSERT_TRUE(guest.ok()) << guest.status();
  ASSERT_TRUE((*guest)->bootstrapped_locally());
  absl::StatusOr<std::unique_ptr<client::RingLink>> link = GuestLink::Create(**guest);
  ASSERT_TRUE(link.ok()) << link.status();

  absl::StatusOr<std::unique_ptr<shm::Segment>> mapping = shm::Segment::Attach(segment_path);
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  absl::StatusOr<std::unique_ptr<client::RingLink>> host = HostLink::Create(
      mapping->get(), {(*guest)->peer_id(), (*guest)->epoch()}, std::nullopt, shm::UniqueFd());
  ASSERT_TRUE(host.ok()) << host.status();

  const absl::Time soon = absl::Now() + absl::Seconds(10);
  for (size_t size : {16, 200, 3000}) {
    ASSERT_TRUE((*link)->Send(Payload(1, size), soon).ok());
    absl::StatusOr<client::ReceivedFrame> at_host = (*host)->Receive(soon);
    ASSERT_TRUE(at_host.ok()) << at_host.status();
    EXPECT_EQ(Copy(at_host->data()), Payload(1, size));
    ASSERT_TRUE((*host)->Send(Payload(2, size), soon).ok());
    absl::StatusOr<client::ReceivedFrame> at_guest = (*link)->Receive(soon);
    ASSERT_TRUE(at_guest.ok()) << at_guest.status();
    EXPECT_EQ(Copy(at_guest->data()), Payload(2, size));
  }

  // Nothing more comes; the daemon, holder of the doorbell's host end, dies.
  absl::Status blocked;
  std::thread receiver(
      [&] { blocked = (*link)->Receive(absl::Now() + absl::Seconds(60)).status(); });
  daemon->process->Signal(SIGKILL);
  receiver.join();
  EXPECT_EQ(blocked.code(), absl::StatusCode::kUnavailable) << blocked;
  EXPECT_TRUE(daemon->process->Wait().has_value());
  host->reset();
  link->reset();
}

}  // namespace
}  // namespace shmhub
