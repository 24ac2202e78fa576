// Command testinit is a minimal /init for qtenclave run's integration test:
// it answers the parent's heartbeat contract (CID 3 port 9000, 0xB7 both
// ways), reports `EXIT <n>` on port 9001 (n from testinit.exit=N on the
// kernel command line, default 0) and reboots, which makes QEMU exit under
// -no-reboot.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	unix.Mount("proc", "/proc", "proc", 0, "")
	code := 0
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, "testinit.exit="); ok {
				code, _ = strconv.Atoi(v)
			}
		}
	}
	if err := exchange(9000, []byte{0xB7}, true); err != nil {
		fmt.Println("testinit: heartbeat:", err)
		reboot()
	}
	if err := exchange(9001, []byte(fmt.Sprintf("EXIT %d\n", code)), false); err != nil {
		fmt.Println("testinit: status:", err)
	}
	fmt.Println("testinit: done")
	reboot()
}

func exchange(port uint32, msg []byte, answer bool) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: 3, Port: port}); err != nil {
		return fmt.Errorf("connect 3:%d: %w", port, err)
	}
	if _, err := unix.Write(fd, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if answer {
		b := make([]byte, 1)
		n, err := unix.Read(fd, b)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n != 1 || b[0] != 0xB7 {
			return errors.New("bad heartbeat answer")
		}
	}
	return nil
}

func reboot() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}
