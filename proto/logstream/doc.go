// Package logstream is the enclave log stream's wire format: how the
// enclave's init sends its own lines, the agent's and the workload's
// stdout and stderr to the parent over one vsock connection, each line
// whole, apart from the kernel console (where a kernel message can land in
// the middle of a line).
//
// Both sides import it: init writes the stream, the parent (qtenclave run
// today) reads it. It depends on the standard library only.
//
// # Wire format
//
// The enclave connects to the parent (CID 3) on the log port (the one
// the kernel command line names: qtenclave.log_port=N; qtenclave run
// uses proto/vsockports.Log) and
// writes Header, then records until it half-closes the connection. The
// parent closes its side once it has read everything: that close is the
// acknowledgement init waits for (bounded) before it reports the exit
// status, so every line is at the parent before the status is.
//
//	header  = "qtenclave-log 1" LF
//	record  = source mark text LF
//	source  = "init" / "agent" / "stdout" / "stderr"
//	mark    = SP      ; the line ends with this record
//	        / "+"     ; the line goes on in the next record of the same source
//	text    = *(any byte except LF)   ; at most MaxText bytes
//
// A line longer than MaxText is sent as several records, every one but the
// last marked "+". A last line without a newline at the end of a source's
// output is sent as a complete line. Text is the source's bytes as written
// (a trailing CR included): the stream does not interpret it, and a reader
// that prints it to a terminal should know it is the workload's.
package logstream
