#include "server/hub_server.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/base/log.h"
#include "shm/path_lock.h"
#include "shm/shm_error.h"

namespace shmhub::server {
namespace {

// Keepalive: the server pings an idle connection every 30 s (10 s to
// answer), so dead watchers are noticed and idle-killing middleboxes see
// traffic. Clients may ping as often as every 5 s without data and without
// any call open; the documented client setting (>= 10 s) keeps a 2x margin
// against timer jitter, so it never earns too_many_pings strikes.
constexpr int kKeepaliveTimeMs = 30'000;
constexpr int kKeepaliveTimeoutMs = 10'000;
constexpr int kMinClientPingIntervalMs = 5'000;
constexpr int kMaxPingStrikes = 2;
// How long calls still open after the watch streams have ended get.
constexpr absl::Duration kUnaryDrain = absl::Milliseconds(200);

std::string RandomInstanceId() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

// "HOST:0" -> "HOST:<port>"; IPv6 hosts keep their brackets.
std::string BoundAddress(const std::string& listen, int port) {
  const size_t colon = listen.rfind(':');
  const std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

}  // namespace

HubServer::HubServer(const HubConfig& config) : config_(config) {}

HubServer::~HubServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<HubServer>> HubServer::Start(const HubConfig& config) {
  std::unique_ptr<HubServer> server(new HubServer(config));
  absl::StatusOr<shm::PathLock> lock = shm::PathLock::Acquire(config.segment_path);
  if (!lock.ok()) {
    server->Abandon();
    return shm::Annotate(lock.status(),
                         absl::StrCat("cannot own the segment ", config.segment_path,
                                      " (is another shmhubd using --segment?)"));
  }
  RestoredState restored;
  absl::StatusOr<std::unique_ptr<StateLog>> state_log =
      StateLog::Open(absl::StrCat(config.segment_path, ".state"), config.journal_capacity,
                     config.max_guests, RandomInstanceId(), &restored);
  for (const std::string& problem : restored.problems) {
    Log(LogLevel::kWarning, absl::StrCat("state log: ", problem));
  }
  if (state_log.ok()) {
    server->state_log_ = *std::move(state_log);
    if (!restored.hub_instance_id.empty()) {
      Log(LogLevel::kInfo,
          absl::StrCat("state log: continuing instance ", restored.hub_instance_id, " after event ",
                       restored.last_sequence, " (", restored.events.size(), " kept for resume), ",
                       restored.slots.size(), " slots"));
    }
    server->journal_ = std::make_unique<EventJournal>(
        server->state_log_->hub_instance_id(), config.journal_capacity,
        std::move(restored.events), restored.last_sequence);
    server->journal_->SetPersistHook([log = server->state_log_.get()](const v1::PeerEvent& e) {
      // A failed write is logged once by the log; the event still goes out.
      log->AppendEvent(e).IgnoreError();
    });
  } else {
    Log(LogLevel::kError,
        absl::StrCat("state log: ", state_log.status().message(),
                     "; running without one: a successor will keep the attached guests but not "
                     "reservations, events or the instance id"));
    restored = RestoredState{};
    server->journal_ = std::make_unique<EventJournal>(RandomInstanceId(), config.journal_capacity);
  }
  server->metrics_ = std::make_unique<HubMetrics>(config.heartbeat_interval, config.crash_timeout);
  server->rpc_metrics_ = std::make_unique<RpcMetrics>(*server->metrics_->registry());
  HubRestore restore;
  restore.lock = *std::move(lock);
  restore.slots = std::move(restored.slots);
  restore.state_log = server->state_log_.get();
  absl::StatusOr<std::unique_ptr<PeerHub>> hub = PeerHub::Create(
      config, server->journal_.get(), server->metrics_.get(), std::move(restore));
  if (!hub.ok()) {
    server->Abandon();
    return hub.status();
  }
  server->hub_ = *std::move(hub);
  server->collector_ = std::make_shared<SegmentCollector>(*server->hub_, *server->journal_);
  server->service_ = std::make_unique<PeerHubService>(*server->hub_, *server->journal_);
  if (!config.metrics_listen.empty()) {
    if (absl::Status status = server->StartExposer(); !status.ok()) {
      server->Abandon();
      return status;
    }
  }
  // The generated descriptor of our own service is always linked in.
  server->rpc_metrics_->AddService(
      *google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::PeerHub::service_full_name()));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(server->service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(server->rpc_metrics_->InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Without this, a second daemon could share a busy port via SO_REUSEPORT.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Server keepalive pings continue on a stream that carries no data.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kMinClientPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, kMaxPingStrikes);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    server->Abandon();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.listen,
                     " (--listen): the address is in use, is not an address of this host, "
                     "or is not HOST:PORT"));
  }
  if (!config.socket_path.empty()) {
    absl::StatusOr<std::unique_ptr<LocalSocketServer>> local =
        LocalSocketServer::Start(config.socket_path, server->hub_.get());
    if (!local.ok()) {
      server->Abandon();
      return local.status();
    }
    server->local_ = *std::move(local);
  }
  server->monitor_ = std::make_unique<LivenessMonitor>(*server->hub_, config.ScanInterval());
  server->port_ = port;
  server->address_ = BoundAddress(config.listen, port);
  server->server_->GetHealthCheckService()->SetServingStatus(v1::PeerHub::service_full_name(),
                                                             true);
  Log(LogLevel::kInfo,
      absl::StrCat("started: listening on ", server->address_, ", segment ", config.segment_path,
                   ", ", config.max_guests, " peer slots, heartbeat interval ",
                   absl::FormatDuration(config.heartbeat_interval), ", crash timeout ",
                   absl::FormatDuration(config.crash_timeout), ", instance ",
                   server->hub_instance_id(),
                   server->exposer_ == nullptr
                       ? std::string(", no /metrics")
                       : absl::StrCat(", /metrics on ", server->metrics_address_)));
  return server;
}

absl::Status HubServer::StartExposer() {
  // prometheus-cpp reports a failed bind only by throwing; this is where
  // that exception becomes a status.
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(config_.metrics_listen);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve /metrics on ", config_.metrics_listen,
                     " (--metrics_listen): the address is in use, is not an address of this "
                     "host, or is not HOST:PORT (",
                     e.what(), ")"));
  }
  const std::vector<int> ports = exposer_->GetListeningPorts();
  if (ports.empty()) {
    exposer_.reset();
    return absl::UnavailableError(absl::StrCat("cannot serve /metrics on ",
                                               config_.metrics_listen,
                                               " (--metrics_listen): no port was bound"));
  }
  metrics_port_ = ports.front();
  metrics_address_ = BoundAddress(config_.metrics_listen, metrics_port_);
  exposer_->RegisterCollectable(metrics_->registry());
  exposer_->RegisterCollectable(collector_);
  return absl::OkStatus();
}

void HubServer::DetachCollector() {
  if (exposer_ != nullptr && collector_ != nullptr) exposer_->RemoveCollectable(collector_);
  collector_.reset();
}

void HubServer::Abandon() {
  absl::MutexLock lock(&shutdown_mu_);
  shut_down_ = true;
  local_.reset();
  server_.reset();
  service_.reset();
  DetachCollector();
  // Removes the segment this start created; no guest can have used it yet.
  hub_.reset();
  exposer_.reset();
}

void HubServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + config_.shutdown_grace;
  Log(LogLevel::kInfo,
      absl::StrCat("shutting down (--stop_mode=", StopModeName(config_.stop_mode), "): telling ",
                   service_->watcher_count(), " watchers, draining RPCs for up to ",
                   absl::FormatDuration(config_.shutdown_grace)));
  server_->GetHealthCheckService()->SetServingStatus(false);
  service_->StopAcceptingWatchers();
  const bool handover = config_.stop_mode == HubConfig::StopMode::kHandover;
  if (handover) {
    // Watch streams end (UNAVAILABLE) and resume at the next daemon.
    hub_->BeginHandover();
    if (local_ != nullptr) local_->Stop(LocalSocketServer::StopKind::kHandover);
  } else {
    hub_->BeginShutdown();
    // host_goodbye is up: ring and close every local guest's doorbell.
    if (local_ != nullptr) local_->Stop();
  }
  if (!service_->WaitForWatchersToEnd(deadline)) {
    Log(LogLevel::kWarning, absl::StrCat(service_->watcher_count(),
                                         " watchers did not take HOST_SHUTDOWN in time; "
                                         "cancelling their streams"));
  }
  // Every call still open now is a unary one, and the hub answers those in
  // microseconds: a short drain is plenty. Waiting for the whole deadline
  // would let an idle client connection hold the stop for the HTTP/2
  // graceful GOAWAY's ping round trip (gRPC waits up to 20 s for its ack).
  server_->Shutdown(absl::ToChronoTime(std::min(deadline, absl::Now() + kUnaryDrain)));
  server_->Wait();
  // Crashes keep being detected and recovered until the RPCs are drained.
  monitor_.reset();
  local_.reset();
  server_.reset();
  service_.reset();
  DetachCollector();
  hub_.reset();
  Log(LogLevel::kInfo,
      absl::StrCat("shut down in ",
                   absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))),
                   "; segment ", config_.segment_path,
                   handover ? " left for the next shmhubd (--stop_mode=handover)" : " removed"));
  // Last, and outside the grace period: civetweb takes about 2 s to stop.
  exposer_.reset();
}

}  // namespace shmhub::server
