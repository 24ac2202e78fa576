// Command tcgprobe is a PID 1 that measures what an operation costs the
// first time it runs in a freshly booted guest and the second time, in the
// same boot. Under QEMU's TCG the difference is mostly translation: code
// (the Go runtime's, the kernel's) runs only after QEMU has translated it,
// once. scripts/bench/tcg-probe.sh boots it with qtenclave run; it prints one
// line per operation and reboots.
//
// It explains the wall-clock figure of init's "own time" under TCG (see
// init/doc.go, "Boot time").
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe-child" {
		os.Exit(0)
	}
	unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	if fd, err := unix.Open("/dev/console", unix.O_RDWR, 0); err == nil {
		unix.Dup3(fd, 1, 0)
		unix.Dup3(fd, 2, 0)
	}
	var out []byte
	line := func(s string) { out = append(out, s+"\n"...) }
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }
	// twice times op(0) then op(1).
	twice := func(name string, op func(i int) error) {
		var d [2]time.Duration
		for i := range 2 {
			t0 := time.Now()
			if err := op(i); err != nil {
				line("tcgprobe: " + name + ": " + err.Error())
				return
			}
			d[i] = time.Since(t0)
		}
		ratio := "-"
		if d[1] > 0 {
			ratio = strconv.FormatFloat(float64(d[0])/float64(d[1]), 'f', 1, 64) + "x"
		}
		line(fmt.Sprintf("tcgprobe: %-28s first %9sms  again %9sms  %7s", name, ms(d[0]), ms(d[1]), ratio))
	}
	line("tcgprobe: operation                     first            again    ratio")
	twice("mount tmpfs", func(i int) error {
		dir := "/probe" + strconv.Itoa(i)
		os.Mkdir(dir, 0o755)
		return unix.Mount("tmpfs", dir, "tmpfs", 0, "")
	})
	twice("mount proc", func(i int) error {
		dir := "/proc" + strconv.Itoa(i)
		os.Mkdir(dir, 0o555)
		return unix.Mount("proc", dir, "proc", 0, "")
	})
	twice("raw open+read /proc0/cmdline", func(int) error {
		fd, err := unix.Open("/proc0/cmdline", unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Read(fd, make([]byte, 4096))
		return err
	})
	twice("os.ReadFile /proc0/cmdline", func(int) error { _, err := os.ReadFile("/proc0/cmdline"); return err })
	twice("fmt.Sprintf", func(i int) error {
		_ = fmt.Sprintf("step %s ok in %d: %q %v", "x", i, []string{"a"}, os.ErrNotExist)
		return nil
	})
	twice("goroutine round trip", func(int) error {
		c := make(chan int)
		go func() { c <- 1 }()
		<-c
		return nil
	})
	twice("signal.Notify", func(i int) error {
		signal.Notify(make(chan os.Signal, 1), []os.Signal{syscall.SIGUSR1, syscall.SIGUSR2}[i])
		return nil
	})
	twice("os.Pipe + Close", func(int) error {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		r.Close()
		return w.Close()
	})
	twice("fork+exec+wait (Go child)", func(int) error { return exec.Command("/init", "probe-child").Run() })
	for _, m := range []string{"/nsm.ko", "/nsm.ko.xz"} {
		f, err := os.Open(m)
		if err != nil {
			continue
		}
		flags := 0
		if m == "/nsm.ko.xz" {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
		t0 := time.Now()
		err = unix.FinitModule(int(f.Fd()), "", flags)
		f.Close()
		if err != nil {
			line("tcgprobe: finit_module " + m + ": " + err.Error())
		} else {
			line(fmt.Sprintf("tcgprobe: %-28s first %9sms  (once)", "finit_module "+m, ms(time.Since(t0))))
		}
		break
	}
	os.Stdout.Write(out)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}
