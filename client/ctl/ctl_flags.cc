#include "client/ctl/ctl_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, hub, "127.0.0.1:50051", "Address of shmhubd's gRPC endpoint.");
ABSL_FLAG(bool, json, false,
          "Print one JSON object per line (proto field names, enums by name) instead of tables.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5), "Deadline of each RPC, e.g. 500ms, 5s.");

ABSL_FLAG(std::optional<absl::Duration>, ttl, std::nullopt,
          "How long the reservation waits to be claimed, e.g. 30s. Default: the daemon's "
          "--default_lease_ttl.");
ABSL_FLAG(std::string, owner, "", "Who holds the reservation (at most 256 bytes).");
ABSL_FLAG(std::string, request_id, "",
          "Idempotency key: retrying with the same id returns the same reservation.");
ABSL_FLAG(std::string, reason, "", "Why the guest is evicted, for the event and the log.");
ABSL_FLAG(bool, all, false, "Also show Empty slots.");
ABSL_FLAG(bool, snapshot, false, "Print a snapshot of every slot before the events.");
ABSL_FLAG(std::optional<uint64_t>, resume_after, std::nullopt,
          "Start with the events after this sequence number (0: from the first event).");
ABSL_FLAG(std::string, instance, "",
          "The hub instance id --resume_after belongs to (from an earlier event or `info`).");
ABSL_FLAG(bool, exit_on_shutdown, false,
          "Exit (status 0) after the HOST_SHUTDOWN event instead of waiting for the daemon to "
          "come back.");
