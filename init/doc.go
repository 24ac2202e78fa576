// Package init documents the enclave's first process (PID 1). It holds no
// code: the main is init/cmd/init, the sequence is init/boot, and each step
// is a small package beside it:
//
//	init/boot        the sequence, the real Machine, Main (never returns)
//	init/console     one-write-per-line console log, prefixed agent output
//	init/cmdline     qtenclave.* knobs from /proc/cmdline
//	init/mount       devtmpfs, move-mount switch root, mount table, /dev links
//	init/kmod        finit_module of /nsm.ko, /qtsm.ko (.xz/.zst/.gz), device wait
//	init/entropy     GetRandom -> RNDADDENTROPY, CRNG readiness, a GetRandom-only client
//	init/vsock       AF_VSOCK dialer without package net
//	init/heartbeat   0xB7 to CID 3 port 9000 with bounded retry and a time-sync hook
//	init/logs        the log stream to the parent (proto/logstream): init's, the agent's and the workload's lines
//	init/netlo       lo up with 127.0.0.1/8 and ::1
//	internal/unixsock the agent's socket, created by init (socket activation)
//	init/reaper      the one wait4(-1) and signal owner
//	init/supervise   qtsm-agent restarts with back-off
//	init/report      the exit status to the parent
//
// What init and the parent (or the image builder) must agree on lives in
// stdlib-only packages both import: proto/launch (the launch manifest:
// launch.json, or cmd and env), proto/status (exit codes, the status line,
// the message to the parent), proto/vsockports (CID, ports, heartbeat
// byte), proto/logstream (the log stream's records), proto/control (the
// stop request), and how a manifest resolves against the image the way
// Docker would, which qtenclave build checks before init meets it:
// proto/workload (Entrypoint+Cmd, env, PATH lookup, WORKDIR) and
// proto/user (USER against /etc/passwd and /etc/group).
//
// # Boot sequence
//
// Each step writes one "step" line with its duration.
//
//  1. devtmpfs on /dev (EBUSY is fine), before anything else (even the
//     start line); /dev/console on fds 0, 1, 2; proc
//     on /proc to read /proc/cmdline (left mounted: it is unreachable after
//     the switch root, and an unmount would cost an RCU grace period). The
//     signals that would end a Go PID 1 are taken over by the reaper,
//     started in the background at the start of Main and waited for before
//     the first child starts: until then nothing can signal init (there is
//     no other process and the console is not its controlling terminal).
//     Garbage collection is off until the workload runs.
//  2. Driver: if /dev/qtsm or /dev/nsm is already there the driver is built
//     in and no module is loaded. Otherwise the first of /nsm.ko,
//     /nsm.ko.xz, /nsm.ko.zst, /nsm.ko.gz (and the same for qtsm) is loaded
//     with finit_module (compressed ones with MODULE_INIT_COMPRESSED_FILE);
//     none = built in or absent; EEXIST = loaded. Then /dev/qtsm or
//     /dev/nsm: after a module load init waits for it (Options.DeviceWait);
//     otherwise
//     it checks once. The device table (paths, buffer sizes) is
//     qtsm/device's, shared with package qtsm. Steps 2 and 3 run on a second goroutine, from just
//     after devtmpfs, while the main one reads /proc/cmdline and the
//     launch configuration (step 5's reading; its line and its verdict
//     still come after the heartbeat); their lines are written when the
//     sequence joins them, before the heartbeat, so the console keeps this
//     order.
//  3. Entropy: 64 bytes from the module's GetRandom (retried by
//     device.GetRandomRetry, the policy qtsm.Session uses too)
//     go into the kernel pool with RNDADDENTROPY crediting 512 bits; then
//     getrandom(GRND_NONBLOCK) must succeed, else init waits with a blocking
//     getrandom (Options.CRNGWait). Policy: without a device, or if the CRNG stays
//     unready, the step fails loudly and the boot continues (the kernel may
//     have other entropy; the workload may not need it).
//  4. Heartbeat: vsock CID 3 port 9000, 0xB7 out, 0xB7 back (the numbers
//     are proto/vsockports'), retried by heartbeat.DefaultPolicy (one place
//     to change it: attempts, back-off, time per attempt); an optional hook then runs on the connection (Qingtian time sync). If it
//     never succeeds the boot ends with reason "heartbeat".
//     Then the log stream ("log-stream" step), when the kernel command
//     line names its port (qtenclave.log_port=N; qtenclave run sets it):
//     init connects to the parent on that port and sends every console
//     line it has written since its start (kept in memory until then,
//     bounded by logs.MaxPending), then every later one, the agent's, and
//     the workload's stdout and stderr, each line a record of its own
//     (wire format: proto/logstream). The workload then writes to pipes
//     that init reads, not to the console, so no kernel message can land
//     in the middle of its lines. Without the knob, or if the connection
//     fails or later breaks, the workload writes to the console as before.
//  5. Launch configuration: /launch.json, else /cmd and /env (missing /env =
//     empty environment). The files stay where they are: outside /rootfs
//     they are unreachable after the switch root.
//  6. Switch root into /rootfs: bind it on itself, chdir, mount(".", "/",
//     MS_MOVE), chroot("."). Then devtmpfs /dev, proc, sysfs, devpts,
//     /dev/shm, /run, /tmp (exec allowed unless the manifest says
//     tmp_noexec), cgroup2, and /dev/fd, /dev/std{in,out,err} links. sysfs,
//     devpts and cgroup2 are optional (a warning if the kernel lacks them).
//  7. qtsm-agent, when /qtsm-agent exists in the bootstrap ramdisk, a device
//     was found and the manifest does not say "agent": false. Contract 8:
//     init opens the binary before the switch root (close-on-exec, at
//     descriptor 10 or above) and execs it after the switch as
//     /proc/self/fd/N, so nothing is copied into the workload's root. The
//     workload is prepared (step 8's resolution) first, because the agent's
//     socket belongs to its group. Socket activation (internal/unixsock):
//     init creates /run/qtsm.sock itself, listening, mode 0660, group the
//     workload's primary group, and passes it to the agent as descriptor 3;
//     init keeps it and gives the same socket to every restarted instance.
//     The agent runs as root with
//     "--socket /run/qtsm.sock --listen-fd 3 --device <dev> [--group <gid>] --ready-fd 4"
//     (--group when the workload's group is not 0: it may extend and lock
//     PCRs), its output prefixed "qtsm-agent: ", restarted with back-off
//     (supervise.DefaultBackoff) when it dies. init does not wait for it: a
//     connection made before the agent is ready waits in the socket's
//     backlog until the agent accepts it. The "agent-ready" step line is
//     written whenever the agent reports ready (within Options.AgentWait, else a failure
//     line; it stays supervised either way). Meanwhile init waits for lo
//     (127.0.0.1/8, ::1; brought up concurrently since step 1, its step
//     line appears here), sets the hostname (manifest, default "enclave"),
//     writes /etc/hosts if absent and sets RLIMIT_NOFILE (manifest
//     nofile_limit, default 65536). When the kernel command line names a
//     control port (qtenclave.control_port=N; qtenclave run sets 9003),
//     init listens on it for the parent's stop request (step "control",
//     proto/control): SIGTERM to the workload's process group, SIGKILL
//     after the grace period (the request's, else the manifest's
//     stop_timeout, else 10 s), then the usual end with the real status.
//  8. The workload, as Docker runs it: Entrypoint+Cmd; PATH (Docker's
//     default), HOSTNAME, the image's Env (later entries win), HOME from the
//     user; argv[0] looked up in the image's PATH; working directory
//     (created if missing, must be searchable by the user); User as name,
//     uid, name:group or uid:gid with supplementary groups from /etc/group;
//     its own session (setsid). SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
//     SIGUSR2 and SIGWINCH sent to init are forwarded to it. One reaper
//     waits for every child and orphan. Its stdout and stderr: pipes into
//     the log stream when it is connected, else the console.
//  9. When the workload exits: the rest of its output is read (until every
//     process holding its pipes has closed them, Options.LogDrain), the agent
//     gets SIGTERM (SIGKILL after Options.AgentStop), sync, the status line,
//     the end of the log stream (half-close; the parent closes its side once
//     it has read every line, which init waits for, Options.LogClose), the
//     status to the parent over vsock (CID 3, port 9001: one line,
//     proto/status; the parent acknowledges it by closing the connection,
//     which init waits for, Options.ReportWait, so the reboot cannot
//     overtake the line), then reboot(RB_AUTOBOOT). With QEMU's
//     -no-reboot that ends the run. If the reboot fails init sleeps forever:
//     PID 1 never exits. A panic anywhere in the sequence ends the same way
//     with reason "internal".
//
// # Kernel command line (docs/protocol.md §5)
//
//	qtenclave.heartbeat=CID:PORT|off   default 3:9000
//	qtenclave.status_port=N            default 9001, 0 = no report
//	qtenclave.log_port=N               default 0 = no log stream (qtenclave run: 9002)
//	qtenclave.control_port=N           default 0 = no stop requests (qtenclave run: 9003)
//	qtenclave.debug=1                  debug lines (signals, orphans)
//
// # Console lines
//
// Every line init writes starts with "init: ", except the status line.
// Durations are milliseconds with three decimals. The formats:
//
//	init: start pid=<pid> uptime=<kernel uptime>ms
//	init: step <name> ok in <d>ms[: <detail>]
//	init: step <name> skipped in <d>ms: <reason>
//	init: step <name> failed in <d>ms: [<detail>: ]<error>
//	init: warning: <text>
//	init: error: <text>
//	init: debug: <text>                                  (qtenclave.debug=1)
//	init: ready in <d>ms (heartbeat <h>ms excluded)
//	init: own time <d>ms (waits excluded: heartbeat <h>ms, device <d>ms, crng <c>ms)
//	init: stop requested by the parent: SIGTERM to the workload's process group <pid>, SIGKILL in <d>
//	init: grace period of <d> over: SIGKILL to the workload's process group <pid>
//	init: workload pid <pid> exited with status <n>
//	init: workload pid <pid> killed by signal <n> (<name>)
//	qtsm-agent: <the agent's own line>
//	qtenclave-exit: code=<0..255> signal=<0|n> reason=<reason>
//	init: rebooting (RB_AUTOBOOT)
//
// Step names, in order: devtmpfs, console, cmdline, modules, device,
// entropy, heartbeat, log-stream, config, agent-open, switch-root, mounts, workload,
// loopback, egress (when the launch manifest opens egress: the proxy's and the
// forwards' listeners on lo, made before the agent that serves them), agent-start,
// hostname, hosts, rlimits, control, exec (then, at the end,
// agent-stop, log-close and report); agent-ready comes whenever the agent is ready,
// usually after exec. Only config, heartbeat, switch-root,
// mounts, workload, egress and exec end the boot when they fail (and a
// manifest that publishes ports with no agent to serve them); the others are
// reported and the boot goes on.
//
// "ready" is the time from init's start to the workload's successful exec
// minus the heartbeat; "own time" also leaves out the waits for the device
// and the CRNG (nothing waits for the agent). The status line is parsed by
// status.ParseLine.
//
// # Boot time
//
// Under QEMU's TCG without KVM, wall-clock durations mostly measure the
// emulator: code that runs for the first time (all of init's, and the
// kernel paths it calls) is translated before it runs, so a syscall such as
// finit_module or a first os.ReadFile costs milliseconds, and the host's
// load adds its share. "qtenclave run --icount 0" runs TCG with guest time
// counted in instructions (1 ns each), which measures init's own work
// independently of the host (scripts/bench/tcg-probe.sh shows the
// first-time cost: a first fmt.Sprintf about 100 times its second, a first
// os.ReadFile about 17 times, and scripts/bench/init-vs-c.sh a minimal C
// init making the same kernel calls, which takes about 60 ms there too); the e2e test TestIntegrationBootTime holds own
// time under 30 ms that way and logs the wall-clock figure of the ordinary
// boots beside it.
//
// # Exit status
//
// The status line and the parent report (proto/status: "EXIT <code>\n" or
// "SIGNAL <n>\n") carry:
//
//	code  reason     when
//	0-255 exited     the workload exited with that code
//	128+n signaled   the workload was killed by signal n (the parent gets "SIGNAL n")
//	125   config     no launch.json and no cmd, malformed manifest, empty command
//	125   user       unknown user or group
//	125   workdir    working directory not a directory or not searchable
//	125   setup      switch root or a required mount failed
//	125   heartbeat  the parent never answered the heartbeat
//	125   internal   init failed (panic or unexpected error)
//	126   noexec     the program exists but cannot be executed
//	127   notfound   the program (or its interpreter) was not found
package init
