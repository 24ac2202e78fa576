// Package egress is the enclave side of the way out: an HTTP/1.1 forward
// proxy for the workload (CONNECT for TLS, end to end; plain http://
// forwarded in absolute form) whose every connection is a tunnel to the
// parent (proto/tunnel over vsock), opened only for destinations the
// image's attested policy allows (proto/egress). A refused destination
// gets 403 with the rule that refused it, and a line on the log. The
// companion (qtsm-agent) runs it on a listener init created before the
// workload started.
package egress
