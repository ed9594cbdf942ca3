"""The metric names shmhubd exports: the contract the shipped rules and
dashboard may rely on, as docs/metrics.md describes them. A name outside this list in
a rule or a panel would be a query that silently returns nothing."""

# Series shmhubd writes, by name, with their labels (for the reader; the
# checks only use the names).
METRICS = {
    "shmhub_peers": ("state",),
    "shmhub_peer_heartbeat_age_seconds": ("peer_id",),
    "shmhub_peer_heartbeat_stale": ("peer_id",),
    "shmhub_peer_detector_armed": ("peer_id", "detector"),
    "shmhub_peer_unmonitored": ("peer_id",),
    "shmhub_crashes_total": ("detector",),
    "shmhub_reservations_total": ("outcome",),
    "shmhub_ring_used_bytes": ("peer_id", "direction"),
    "shmhub_varslot_free": ("class",),
    "shmhub_varslot_capacity": ("class",),
    "shmhub_host_registered": (),
    "shmhub_host_ack_timeouts_total": (),
    "shmhub_events_total": ("kind",),
    "shmhub_watchers": (),
    "shmhub_watch_resyncs_total": (),
    "shmhub_build_info": ("version",),
    "grpc_server_started_total": ("grpc_service", "grpc_method", "grpc_type"),
    "grpc_server_handled_total": ("grpc_service", "grpc_method", "grpc_type", "grpc_code"),
}

# Histograms: queried through their _bucket, _sum and _count series.
HISTOGRAMS = {
    "shmhub_crash_detection_seconds": (),
    "shmhub_recovery_seconds": (),
    "grpc_server_handling_seconds": ("grpc_service", "grpc_method", "grpc_type"),
}

# Written by Prometheus itself for every scrape target, not by shmhubd.
PROMETHEUS_SERIES = {"up"}


def exported_names():
    """Every series name a query against a shmhub scrape job can select."""
    names = set(METRICS) | PROMETHEUS_SERIES
    for histogram in HISTOGRAMS:
        names |= {histogram + "_bucket", histogram + "_sum", histogram + "_count"}
    return names
