// Package metrics exposes a Sotto server's counters to Prometheus: the
// media relay's, signaling's and the TURN server's, plus the standard Go
// runtime (go_*) and process (process_*) collectors. The series:
//
//	sotto_rooms, sotto_participants, sotto_tracks         gauges
//	sotto_rtp_packets_received_total                      RTP from publishers
//	sotto_rtp_bytes_received_total
//	sotto_rtp_packets_forwarded_total                     one per subscriber
//	sotto_rtp_bytes_forwarded_total
//	sotto_rtp_packets_dropped_total{reason}               unknown_ssrc, no_subscriber, write_error, malformed,
//	                                                      duplicate, unknown_source, unauthentic, stale
//	sotto_nacks_answered_total, sotto_nacks_missed_total  subscribers' NACKs, from history
//	sotto_upstream_nacks_total                            packets asked of publishers again
//	sotto_upstream_recovered_total                        ... that arrived
//	sotto_upstream_given_up_total                         ... that did not
//	sotto_joins_total
//	sotto_join_failures_total{reason}                     API error codes (room_full, unauthorized, ...)
//	sotto_envelopes_relayed_total
//	sotto_envelopes_refused_total{reason}                 unknown_recipient, envelope_too_large, recipient_busy,
//	                                                      envelope_rate_limited
//	sotto_turn_allocations                                gauge
//	sotto_turn_allocations_created_total
//	sotto_turn_refused_total{reason}                      quota_user, quota_total, denied_peer, bad_credentials
//	sotto_turn_dropped_packets_total
//	sotto_turn_tcp_connections, sotto_turn_tcp_refused_total
//	sotto_join_redirects_total                            joins answered wrong_node (cluster)
//
// A node of a cluster adds its view of the cluster (docs/CLUSTER.md):
//
//	sotto_cluster_nodes, sotto_cluster_rooms_owned        gauges
//	sotto_cluster_draining, sotto_cluster_store_up        0 or 1
//	sotto_cluster_store_errors_total, sotto_cluster_rooms_lost_total
//	sotto_cluster_placements_total{where}                 here, elsewhere
//	sotto_cluster_node_info{node,url,self}                1 per live node
//	sotto_cluster_node_rooms{node}, sotto_cluster_node_participants{node},
//	sotto_cluster_node_cpu_cores{node}, sotto_cluster_node_draining{node}
//
// The counters are read from each component's Stats snapshot when
// Prometheus scrapes, so the forwarding path never calls into Prometheus.
// Package scrape reads the text exposition back.
package metrics
