#include "shm/bootstrap.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "shm/doorbell.h"
#include "shm/le_bytes.h"
#include "shm/mapping_control.h"
#include "shm/shm_error.h"
#include "tests/shm/socket_test_util.h"

namespace shmhub::shm {
namespace {

using socket_test::MemfdWith;
using socket_test::OpenFds;
using socket_test::SendWithFds;
using socket_test::SignalCounter;
using socket_test::WaitFor;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout{5000};

std::vector<uint8_t> Bytes(absl::string_view s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// GCC 12 at -O3 cannot see that a vector indexed right after it was sized
// or copied is non-empty, and warns of a null dereference that cannot
// happen; -O2 and clang do not.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
// A response frame built by hand, so tests can say things our encoder
// refuses to (wrong status, wrong peer id, wrong length).
std::vector<uint8_t> RawFrame(absl::string_view magic, uint8_t status, uint32_t peer_id,
                              uint16_t payload_len, absl::string_view payload) {
  std::vector<uint8_t> out(11 + payload.size());
  std::memcpy(out.data(), magic.data(), 4);
  out[4] = status;
  PutLe<uint32_t>(out.data() + 5, peer_id);
  PutLe<uint16_t>(out.data() + 9, payload_len);
  std::memcpy(out.data() + 11, payload.data(), payload.size());
  return out;
}
#pragma GCC diagnostic pop

int Queued(int fd) {
  int bytes = -1;
  EXPECT_EQ(::ioctl(fd, FIONREAD, &bytes), 0);
  return bytes;
}

ino_t Inode(int fd) {
  struct stat st = {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

struct StreamPair {
  UniqueFd server;
  UniqueFd client;
};

StreamPair MakeStreamPair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return StreamPair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// What a host hands a guest in a VSP1 success, plus the host's own ends.
struct GuestResources {
  Doorbell host_doorbell;
  Doorbell guest_doorbell;
  UniqueFd segment;
  UniqueFd host_control;
  UniqueFd guest_control_recv;
  UniqueFd guest_control_send;

  static GuestResources Make() {
    auto doorbells = Doorbell::CreatePair();
    auto control = CreateMappingControlPair();
    EXPECT_TRUE(doorbells.ok() && control.ok());
    UniqueFd guest_recv = std::move(control->second);
    auto guest_send = DupCloexec(guest_recv.get());
    EXPECT_TRUE(guest_send.ok());
    return GuestResources{std::move(doorbells->first), std::move(doorbells->second),
                          MemfdWith("segment bytes"),  std::move(control->first),
                          std::move(guest_recv),       *std::move(guest_send)};
  }
  std::vector<int> VoxFds() const {
    return {guest_doorbell.fd(), segment.get(), guest_control_recv.get(), guest_control_send.get()};
  }
};

TEST(Bootstrap, C_S1_VoxRequestIsVsh1AndDecodingChecksLengthAndMagic) {
  const auto request = EncodeVoxRequest();
  EXPECT_EQ(std::vector<uint8_t>(request.begin(), request.end()),
            (std::vector<uint8_t>{0x56, 0x53, 0x48, 0x31}));

  absl::StatusOr<BootstrapRequest> exact = DecodeBootstrapRequest(request);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->dialect, BootstrapDialect::kVox);
  absl::StatusOr<BootstrapRequest> trailing = DecodeBootstrapRequest(Bytes("VSH1 and more"));
  ASSERT_TRUE(trailing.ok()) << trailing.status();
  EXPECT_EQ(trailing->dialect, BootstrapDialect::kVox);

  EXPECT_EQ(ShmErrcOf(DecodeBootstrapRequest(Bytes("VSH")).status()), ShmErrc::kBootstrapTruncated);
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapRequest(Bytes("NOPE")).status()),
            ShmErrc::kBootstrapInvalidMagic);
}

TEST(Bootstrap, C_S2_ResponseVectorsAndRoundTrip) {
  const BootstrapResponse ok{BootstrapStatus::kSuccess, 7, "ok"};
  const std::vector<uint8_t> ok_bytes = {0x56, 0x53, 0x50, 0x31, 0x00, 0x07, 0x00,
                                         0x00, 0x00, 0x02, 0x00, 0x6f, 0x6b};
  const BootstrapResponse refused{BootstrapStatus::kError, 0, "no slot"};
  const std::vector<uint8_t> refused_bytes = {0x56, 0x53, 0x50, 0x31, 0x01, 0x00, 0x00, 0x00, 0x00,
                                              0x07, 0x00, 0x6e, 0x6f, 0x20, 0x73, 0x6c, 0x6f, 0x74};
  EXPECT_EQ(*EncodeBootstrapResponse(BootstrapDialect::kVox, ok), ok_bytes);
  EXPECT_EQ(*EncodeBootstrapResponse(BootstrapDialect::kVox, refused), refused_bytes);

  for (const BootstrapResponse& response : {ok, refused}) {
    for (BootstrapDialect dialect : {BootstrapDialect::kVox, BootstrapDialect::kSpec}) {
      absl::StatusOr<std::vector<uint8_t>> bytes = EncodeBootstrapResponse(dialect, response);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      absl::StatusOr<BootstrapResponse> back = DecodeBootstrapResponse(dialect, *bytes);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(back->status, response.status);
      EXPECT_EQ(back->peer_id, response.peer_id);
      EXPECT_EQ(back->payload, response.payload);
    }
  }
  // The dialects differ only in the magic, and each decoder wants its own.
  std::vector<uint8_t> spec = *EncodeBootstrapResponse(BootstrapDialect::kSpec, ok);
  EXPECT_EQ(std::string(spec.begin(), spec.begin() + 4), "RSP0");
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapResponse(BootstrapDialect::kVox, spec).status()),
            ShmErrc::kBootstrapInvalidMagic);
}

TEST(Bootstrap, C_S3_UnknownStatusIsReportedEvenWithAWrongLength) {
  EXPECT_EQ(
      ShmErrcOf(DecodeBootstrapResponse(BootstrapDialect::kVox, RawFrame("VSP1", 9, 0, 2, "ok"))
                    .status()),
      ShmErrc::kBootstrapUnknownStatus);
  EXPECT_EQ(
      ShmErrcOf(DecodeBootstrapResponse(BootstrapDialect::kVox, RawFrame("VSP1", 9, 0, 5, "ok"))
                    .status()),
      ShmErrc::kBootstrapUnknownStatus);
}

TEST(Bootstrap, C_S4_ErrorResponseWithPeerIdIsRefused) {
  EXPECT_EQ(
      ShmErrcOf(
          DecodeBootstrapResponse(BootstrapDialect::kVox, RawFrame("VSP1", 1, 42, 0, "")).status()),
      ShmErrc::kBootstrapBadPeerId);
  EXPECT_EQ(
      ShmErrcOf(EncodeBootstrapResponse(BootstrapDialect::kVox, {BootstrapStatus::kError, 42, ""})
                    .status()),
      ShmErrc::kBootstrapBadPeerId);
}

TEST(Bootstrap, C_S5_MissingOrExtraByteIsALengthMismatchAndTenBytesAreTruncated) {
  std::vector<uint8_t> frame =
      *EncodeBootstrapResponse(BootstrapDialect::kVox, {BootstrapStatus::kSuccess, 7, "ok"});
  std::vector<uint8_t> missing(frame.begin(), frame.end() - 1);
  std::vector<uint8_t> extra = frame;
  extra.push_back('!');
  std::vector<uint8_t> ten(frame.begin(), frame.begin() + 10);
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapResponse(BootstrapDialect::kVox, missing).status()),
            ShmErrc::kBootstrapLengthMismatch);
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapResponse(BootstrapDialect::kVox, extra).status()),
            ShmErrc::kBootstrapLengthMismatch);
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapResponse(BootstrapDialect::kVox, ten).status()),
            ShmErrc::kBootstrapTruncated);
}

TEST(Bootstrap, C_S6_EncodingAPayloadOf65536BytesFails) {
  BootstrapResponse response{BootstrapStatus::kSuccess, 1, std::string(65536, 'p')};
  EXPECT_EQ(ShmErrcOf(EncodeBootstrapResponse(BootstrapDialect::kVox, response).status()),
            ShmErrc::kBootstrapPayloadTooLarge);
  response.payload.pop_back();
  absl::StatusOr<std::vector<uint8_t>> largest =
      EncodeBootstrapResponse(BootstrapDialect::kVox, response);
  ASSERT_TRUE(largest.ok()) << largest.status();
  EXPECT_EQ(largest->size(), 11u + 65535u);
}

TEST(Bootstrap, C_S7_UnixSuccessCarriesFourUsableFdsInOrderAndOtherCountsAreRefused) {
  StreamPair sockets = MakeStreamPair();
  GuestResources guest = GuestResources::Make();
  const std::vector<int> fds = guest.VoxFds();
  ASSERT_TRUE(SendBootstrapResponse(sockets.server.get(), BootstrapDialect::kVox,
                                    {BootstrapStatus::kSuccess, 3, "/dev/shm/hub"}, fds, kTimeout)
                  .ok());

  absl::StatusOr<ReceivedBootstrapResponse> received =
      ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_EQ(received->response.status, BootstrapStatus::kSuccess);
  EXPECT_EQ(received->response.peer_id, 3u);
  EXPECT_EQ(received->response.payload, "/dev/shm/hub");
  ASSERT_EQ(received->fds.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NE(received->fds[i].get(), fds[i]);
    EXPECT_EQ(Inode(received->fds[i].get()), Inode(fds[i])) << "fd " << i << " out of order";
  }

  // 1. doorbell: the host's ring wakes it.
  Doorbell doorbell(DoorbellEnd::kGuest, std::move(received->fds[0]));
  ASSERT_EQ(*guest.host_doorbell.Signal(), SignalResult::kSent);
  EXPECT_EQ(*doorbell.Wait(kTimeout), WaitResult::kWoken);
  // 2. segment: readable.
  char head[7] = {};
  EXPECT_EQ(::pread(received->fds[1].get(), head, 7, 0), 7);
  EXPECT_EQ(std::string(head, 7), "segment");
  // 3. mapping-control receive: gets what the host sends.
  UniqueFd region = MemfdWith("r");
  ASSERT_TRUE(SendMappingControl(guest.host_control.get(), {9, 0, 1}, region.get()).ok());
  auto from_host = ReceiveMappingControl(received->fds[2].get());
  ASSERT_TRUE(from_host.ok() && from_host->has_value()) << from_host.status();
  EXPECT_EQ((*from_host)->message.map_id, 9u);
  // 4. mapping-control send: the host gets what it sends.
  ASSERT_TRUE(SendMappingControl(received->fds[3].get(), {10, 0, 1}, region.get()).ok());
  auto from_guest = ReceiveMappingControl(guest.host_control.get());
  ASSERT_TRUE(from_guest.ok() && from_guest->has_value()) << from_guest.status();
  EXPECT_EQ((*from_guest)->message.map_id, 10u);

  // A receiver given 3 or 5 fds refuses and closes them.
  const std::vector<uint8_t> frame = RawFrame("VSP1", 0, 3, 2, "ok");
  const std::set<int> before = OpenFds();
  for (std::vector<int> wrong : {std::vector<int>(fds.begin(), fds.end() - 1),
                                 std::vector<int>{fds[0], fds[1], fds[2], fds[3], fds[0]}}) {
    ASSERT_EQ(SendWithFds(sockets.server.get(), frame, wrong), static_cast<ssize_t>(frame.size()));
    absl::StatusOr<ReceivedBootstrapResponse> refused =
        ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout);
    EXPECT_EQ(ShmErrcOf(refused.status()), ShmErrc::kBootstrapBadFdCount)
        << wrong.size() << ": " << refused.status();
    EXPECT_EQ(OpenFds(), before) << wrong.size();
  }
  // Nor will we send such a response.
  EXPECT_EQ(ShmErrcOf(SendBootstrapResponse(sockets.server.get(), BootstrapDialect::kVox,
                                            {BootstrapStatus::kSuccess, 3, ""},
                                            absl::MakeConstSpan(fds).subspan(0, 3), kTimeout)),
            ShmErrc::kBootstrapBadFdCount);
}

TEST(Bootstrap, C_S8_ErrorResponseCarriesNoFdsAndOneWithFdsIsRefused) {
  StreamPair sockets = MakeStreamPair();
  ASSERT_TRUE(SendBootstrapResponse(sockets.server.get(), BootstrapDialect::kVox,
                                    {BootstrapStatus::kError, 0, "no slot"}, {}, kTimeout)
                  .ok());
  absl::StatusOr<ReceivedBootstrapResponse> received =
      ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_EQ(received->response.status, BootstrapStatus::kError);
  EXPECT_EQ(received->response.payload, "no slot");
  EXPECT_TRUE(received->fds.empty());

  UniqueFd stray = MemfdWith("x");
  const int one[] = {stray.get()};
  EXPECT_EQ(
      ShmErrcOf(SendBootstrapResponse(sockets.server.get(), BootstrapDialect::kVox,
                                      {BootstrapStatus::kError, 0, "no slot"}, one, kTimeout)),
      ShmErrc::kBootstrapBadFdCount);

  const std::vector<uint8_t> frame = RawFrame("VSP1", 1, 0, 7, "no slot");
  ASSERT_EQ(SendWithFds(sockets.server.get(), frame, one), static_cast<ssize_t>(frame.size()));
  const std::set<int> before = OpenFds();
  absl::StatusOr<ReceivedBootstrapResponse> refused =
      ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout);
  EXPECT_EQ(ShmErrcOf(refused.status()), ShmErrc::kBootstrapBadFdCount) << refused.status();
  EXPECT_EQ(OpenFds(), before);
}

TEST(Bootstrap, C_S9_ControlTruncationIsAnErrorAndClosesWhatArrived) {
  StreamPair sockets = MakeStreamPair();
  UniqueFd file = MemfdWith("x");
  // More fds than the receiver has room for, so the kernel sets MSG_CTRUNC.
  const std::vector<int> many(9, file.get());
  const std::vector<uint8_t> frame = RawFrame("VSP1", 0, 3, 2, "ok");
  ASSERT_EQ(SendWithFds(sockets.server.get(), frame, many), static_cast<ssize_t>(frame.size()));
  const std::set<int> before = OpenFds();
  absl::StatusOr<ReceivedBootstrapResponse> received =
      ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout);
  EXPECT_EQ(ShmErrcOf(received.status()), ShmErrc::kBootstrapControlTruncated) << received.status();
  EXPECT_EQ(OpenFds(), before);
}

TEST(Bootstrap, C_S10_StreamVariantPayloadSplitsIntoThreeFields) {
  using namespace std::string_literals;
  absl::StatusOr<StreamBootstrapPayload> fields =
      SplitStreamBootstrapPayload("/tmp/test.shm\0a\0b"s);
  ASSERT_TRUE(fields.ok()) << fields.status();
  EXPECT_EQ(fields->segment_path, "/tmp/test.shm");
  EXPECT_EQ(fields->doorbell_name, "a");
  EXPECT_EQ(fields->mmap_control_name, "b");

  EXPECT_EQ(ShmErrcOf(SplitStreamBootstrapPayload("/tmp/test.shm\0a"s).status()),
            ShmErrc::kBootstrapBadFields);
  EXPECT_EQ(ShmErrcOf(SplitStreamBootstrapPayload("/tmp/test.shm").status()),
            ShmErrc::kBootstrapBadFields);

  // Further NULs stay in the third field; empty fields are allowed.
  absl::StatusOr<StreamBootstrapPayload> more = SplitStreamBootstrapPayload("\0\0b\0c"s);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_EQ(more->segment_path, "");
  EXPECT_EQ(more->mmap_control_name, "b\0c"s);

  // Each field must be UTF-8.
  EXPECT_TRUE(SplitStreamBootstrapPayload("/tmp/caf\xc3\xa9\0a\0\xf0\x9f\x98\x80"s).ok());
  for (const std::string& bad : {"\xff\0a\0b"s, "p\0\xc0\x80\0b"s, "p\0a\0\xed\xa0\x80"s,
                                 "p\0a\0\xf4\x90\x80\x80"s, "p\0a\0\xe2\x82"s}) {
    EXPECT_EQ(ShmErrcOf(SplitStreamBootstrapPayload(bad).status()), ShmErrc::kBootstrapBadFields)
        << absl::CEscape(bad);
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"  // as RawFrame above
TEST(Bootstrap, C_S11_SpecRequestVectorSidLengthCheckAndThreeFdSuccess) {
  absl::StatusOr<std::vector<uint8_t>> request = EncodeSpecRequest("ab");
  ASSERT_TRUE(request.ok()) << request.status();
  const std::vector<uint8_t> expected = {0x52, 0x53, 0x48, 0x30, 0x02, 0x00, 0x61, 0x62};
  EXPECT_EQ(*request, expected);
  absl::StatusOr<BootstrapRequest> decoded = DecodeBootstrapRequest(expected);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->dialect, BootstrapDialect::kSpec);
  EXPECT_EQ(decoded->session_id, "ab");

  std::vector<uint8_t> long_sid = expected;
  long_sid[4] = 3;
  std::vector<uint8_t> short_sid = expected;
  short_sid[4] = 1;
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapRequest(long_sid).status()),
            ShmErrc::kBootstrapLengthMismatch);
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapRequest(short_sid).status()),
            ShmErrc::kBootstrapLengthMismatch);
  EXPECT_EQ(ShmErrcOf(DecodeBootstrapRequest(Bytes("RSH0\x02")).status()),
            ShmErrc::kBootstrapTruncated);
  EXPECT_EQ(ShmErrcOf(EncodeSpecRequest(std::string(65536, 's')).status()),
            ShmErrc::kBootstrapPayloadTooLarge);

  // RSP0 success: doorbell, segment, one mapping-control fd.
  StreamPair sockets = MakeStreamPair();
  GuestResources guest = GuestResources::Make();
  const std::vector<int> three = {guest.guest_doorbell.fd(), guest.segment.get(),
                                  guest.guest_control_recv.get()};
  EXPECT_EQ(ShmErrcOf(SendBootstrapResponse(sockets.server.get(), BootstrapDialect::kSpec,
                                            {BootstrapStatus::kSuccess, 4, ""}, guest.VoxFds(),
                                            kTimeout)),
            ShmErrc::kBootstrapBadFdCount);
  ASSERT_TRUE(SendBootstrapResponse(sockets.server.get(), BootstrapDialect::kSpec,
                                    {BootstrapStatus::kSuccess, 4, "/dev/shm/hub"}, three, kTimeout)
                  .ok());
  absl::StatusOr<ReceivedBootstrapResponse> received =
      ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kSpec, kTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_EQ(received->response.peer_id, 4u);
  ASSERT_EQ(received->fds.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(Inode(received->fds[i].get()), Inode(three[i]));

  // Four fds with an RSP0 success are refused.
  const std::vector<uint8_t> frame = RawFrame("RSP0", 0, 4, 0, "");
  const std::set<int> before = OpenFds();
  ASSERT_EQ(SendWithFds(sockets.server.get(), frame, guest.VoxFds()),
            static_cast<ssize_t>(frame.size()));
  EXPECT_EQ(
      ShmErrcOf(ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kSpec, kTimeout)
                    .status()),
      ShmErrc::kBootstrapBadFdCount);
  EXPECT_EQ(OpenFds(), before);
}
#pragma GCC diagnostic pop

TEST(Bootstrap, C_S12_SplitResponseIsReceivedWholeAndPeerIdOutsideOneTo255IsRefused) {
  StreamPair sockets = MakeStreamPair();
  GuestResources guest = GuestResources::Make();
  const std::vector<int> fds = guest.VoxFds();
  const std::string path(300, 'p');
  const std::vector<uint8_t> frame =
      *EncodeBootstrapResponse(BootstrapDialect::kVox, {BootstrapStatus::kSuccess, 255, path});

  // First 5 bytes (inside the header) with the fds now, the rest later, while
  // the receiver is already waiting.
  ASSERT_EQ(SendWithFds(sockets.server.get(), absl::MakeConstSpan(frame).subspan(0, 5), fds), 5);
  std::thread late_sender([&] {
    std::this_thread::sleep_for(milliseconds(50));
    const auto rest = absl::MakeConstSpan(frame).subspan(5);
    EXPECT_EQ(::send(sockets.server.get(), rest.data(), rest.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(rest.size()));
  });
  absl::StatusOr<ReceivedBootstrapResponse> received =
      ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout);
  late_sender.join();
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_EQ(received->response.peer_id, 255u);
  EXPECT_EQ(received->response.payload, path);
  EXPECT_EQ(received->fds.size(), 4u);

  // Peer id 0 and 256 are refused by the decoder, and over the socket the
  // fds that came with them are closed.
  for (uint32_t peer_id : {0u, 256u}) {
    EXPECT_EQ(ShmErrcOf(DecodeBootstrapResponse(BootstrapDialect::kVox,
                                                RawFrame("VSP1", 0, peer_id, 0, ""))
                            .status()),
              ShmErrc::kBootstrapBadPeerId)
        << peer_id;
    EXPECT_EQ(ShmErrcOf(EncodeBootstrapResponse(BootstrapDialect::kVox,
                                                {BootstrapStatus::kSuccess, peer_id, ""})
                            .status()),
              ShmErrc::kBootstrapBadPeerId);
    const std::vector<uint8_t> bad = RawFrame("VSP1", 0, peer_id, 0, "");
    const std::set<int> before = OpenFds();
    ASSERT_EQ(SendWithFds(sockets.server.get(), bad, fds), static_cast<ssize_t>(bad.size()));
    EXPECT_EQ(
        ShmErrcOf(ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout)
                      .status()),
        ShmErrc::kBootstrapBadPeerId);
    EXPECT_EQ(OpenFds(), before);
  }
}

TEST(BootstrapTransport, FdsArrivingAfterTheFirstByteAreRefusedAndClosed) {
  StreamPair sockets = MakeStreamPair();
  GuestResources guest = GuestResources::Make();
  const std::vector<uint8_t> frame = RawFrame("VSP1", 0, 3, 2, "ok");
  const std::set<int> before = OpenFds();
  absl::StatusOr<ReceivedBootstrapResponse> received = absl::UnknownError("not run");
  std::thread receiver([&] {
    received = ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout);
  });
  ASSERT_EQ(SendWithFds(sockets.server.get(), absl::MakeConstSpan(frame).subspan(0, 4), {}), 4);
  // Only once the receiver has taken the first bytes, or the kernel would
  // hand both sends over in one read with the fds attached to it.
  EXPECT_TRUE(WaitFor([&] { return Queued(sockets.client.get()) == 0; }, kTimeout));
  EXPECT_EQ(
      SendWithFds(sockets.server.get(), absl::MakeConstSpan(frame).subspan(4), guest.VoxFds()),
      static_cast<ssize_t>(frame.size() - 4));
  receiver.join();
  EXPECT_EQ(ShmErrcOf(received.status()), ShmErrc::kBootstrapBadFdCount) << received.status();
  EXPECT_EQ(OpenFds(), before);
}

TEST(BootstrapTransport, PeerClosingMidFrameIsTruncatedAndSilenceTimesOut) {
  {
    StreamPair sockets = MakeStreamPair();
    const std::vector<uint8_t> frame = RawFrame("VSP1", 1, 0, 7, "no slot");
    ASSERT_EQ(SendWithFds(sockets.server.get(), absl::MakeConstSpan(frame).subspan(0, 13), {}), 13);
    sockets.server.Reset();
    EXPECT_EQ(
        ShmErrcOf(ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, kTimeout)
                      .status()),
        ShmErrc::kBootstrapTruncated);
  }
  {
    StreamPair sockets = MakeStreamPair();
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<ReceivedBootstrapResponse> silent =
        ReceiveBootstrapResponse(sockets.client.get(), BootstrapDialect::kVox, milliseconds(50));
    EXPECT_EQ(ShmErrcOf(silent.status()), ShmErrc::kIo) << silent.status();
    EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
  }
}

TEST(BootstrapTransport, SendToClosedPeerFailsWithoutSigpipe) {
  SignalCounter<SIGPIPE> sigpipes;
  StreamPair sockets = MakeStreamPair();
  sockets.client.Reset();
  absl::Status sent = SendBootstrapResponse(sockets.server.get(), BootstrapDialect::kVox,
                                            {BootstrapStatus::kError, 0, "bye"}, {}, kTimeout);
  EXPECT_EQ(ShmErrcOf(sent), ShmErrc::kIo) << sent;
  EXPECT_EQ(sigpipes.count(), 0);
}

}  // namespace
}  // namespace shmhub::shm
