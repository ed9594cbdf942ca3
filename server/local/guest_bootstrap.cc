#include "server/local/guest_bootstrap.h"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/base/log.h"
#include "shm/doorbell.h"
#include "shm/mapping_control.h"

namespace shmhub::server {
namespace {

// The reply is a few hundred bytes on a fresh socket; this only bounds a
// client that never reads.
constexpr std::chrono::milliseconds kReplyTimeout{1000};

void ReplyError(int connection, shm::BootstrapDialect dialect, const std::string& message) {
  shm::BootstrapResponse response;
  response.status = shm::BootstrapStatus::kError;
  response.payload = message.substr(0, shm::kMaxBootstrapPayload);
  // The client may already be gone; there is nobody else to tell.
  shm::SendBootstrapResponse(connection, dialect, response, {}, kReplyTimeout).IgnoreError();
}

}  // namespace

std::optional<WatchedGuest> BootstrapGuest(PeerHub& hub, Handshake& handshake,
                                           const shm::BootstrapRequest& request) {
  LocalGuest guest;
  guest.session_id = request.session_id;
  guest.pid = handshake.who.pid;
  guest.pid_start_time = handshake.who.start_time;
  guest.uid = handshake.who.uid;
  guest.process_watched = handshake.who.pidfd.valid();
  const int connection = handshake.connection.get();
  const std::string who = handshake.who.Describe();
  absl::StatusOr<Reservation> reservation = hub.ReserveForLocalGuest(guest);
  if (!reservation.ok()) {
    Log(LogLevel::kWarning, absl::StrCat("local socket: refused the guest with ", who, ": ",
                                         reservation.status().message()));
    ReplyError(connection, request.dialect, std::string(reservation.status().message()));
    return std::nullopt;
  }
  const shm::Occupancy occupancy = reservation->occupancy();
  absl::StatusOr<std::pair<shm::Doorbell, shm::Doorbell>> doorbells = shm::Doorbell::CreatePair();
  absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> mapping = shm::CreateMappingControlPair();
  absl::Status status = !doorbells.ok() ? doorbells.status() : mapping.status();
  if (status.ok()) {
    const int guest_mapping = mapping->second.get();
    std::vector<int> fds = {doorbells->second.fd(), hub.segment().fd(), guest_mapping};
    // §11.1: Rust wants the mapping-control socket twice (receive, send).
    if (request.dialect == shm::BootstrapDialect::kVox) fds.push_back(guest_mapping);
    shm::BootstrapResponse response;
    response.status = shm::BootstrapStatus::kSuccess;
    response.peer_id = occupancy.peer_id;
    response.payload = hub.config().segment_path;
    status = shm::SendBootstrapResponse(connection, request.dialect, response, fds, kReplyTimeout);
  } else {
    ReplyError(connection, request.dialect, "shmhubd could not create the guest's sockets");
  }
  if (!status.ok()) {
    Log(LogLevel::kWarning, absl::StrCat("local socket: bootstrap of ", occupancy.ToString(),
                                         " for the guest with ", who, " failed: ",
                                         status.ToString(), "; releasing the slot"));
    // Fenced on the epoch; a no-op if the slot has already moved on.
    hub.Release(occupancy).IgnoreError();
    return std::nullopt;
  }
  // The guest ends (doorbells->second, mapping->second) close when this
  // function returns: the guest's copies are then the only ones, which is
  // what makes the hang-up mean "the guest is gone" (§10).
  std::vector<std::string> detectors = {"doorbell"};
  if (guest.process_watched) detectors.push_back("process_exit");
  Log(LogLevel::kInfo, absl::StrCat("local socket: guest with ", who, " bootstrapped into ",
                                    occupancy.ToString(), " (detectors ",
                                    absl::StrJoin(detectors, ", "), ")"));
  return WatchedGuest{.occupancy = occupancy,
                      .doorbell = std::move(doorbells->first),
                      .pidfd = std::move(handshake.who.pidfd),
                      .mapping_control = std::move(mapping->first)};
}

}  // namespace shmhub::server
