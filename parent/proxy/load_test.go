package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qtenclave/enclave/proto/tunnel"
)

// TestEgressLoad (QTENCLAVE_EGRESS_LOAD=1; scripts/bench/egress-bench.sh)
// measures the whole egress path with the real companion: qtsm-agent
// (built here, on the simulator) serving the HTTP proxy, its tunnels over
// loopback TCP (the local transport standing in for vsock) to this
// package's tunnel server, and on to a sink. In the same run it measures
// the baseline, a direct loopback TCP copy, and reports:
//   - bulk throughput through the parent's tunnel server alone vs direct
//     (goal >= 0.7x), and through the whole path;
//   - short tunnels per second (CONNECT, one byte each way, close) vs
//     direct connections per second;
//   - 200 tunnels open at once, 64 KiB each way in each: lost or corrupted
//     streams (goal 0), and the companion's RSS with all 200 open.
func TestEgressLoad(t *testing.T) {
	if os.Getenv("QTENCLAVE_EGRESS_LOAD") == "" {
		t.Skip("skipped: set QTENCLAVE_EGRESS_LOAD=1 for the egress throughput and load benchmark (about a minute)")
	}
	mib := 512
	if v, err := strconv.Atoi(os.Getenv("QTENCLAVE_EGRESS_MIB")); err == nil && v > 0 {
		mib = v
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "qtsm-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../../agent/cmd/qtsm-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build qtsm-agent: %v\n%s", err, out)
	}

	// The destinations: a sink that counts, and an echo server.
	sink := serveTCP(t, func(c net.Conn) {
		// Reads of 256 KiB, as the client's writes: an efficient copy.
		buf := make([]byte, 256<<10)
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		fmt.Fprintf(c, "%d\n", n)
	})
	echoL := echo(t)
	sinkPort, echoPort := port(t, "tcp://"+sink), port(t, "tcp://"+echoL.Addr().String())

	// The parent's tunnel server.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	image := mustPolicy(t, "sink.test:"+sinkPort, "echo.test:"+echoPort)
	tun := &Tunnels{Image: image, Hosts: map[string][]netip.Addr{"sink.test": loop, "echo.test": loop}, MaxTunnels: 4096}
	go tun.Serve(tl)
	// The same tunnel server on a Unix socket: a local transport that,
	// like vsock, is a socket family of its own rather than TCP.
	ul, err := net.Listen("unix", filepath.Join(dir, "tunnels.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go tun.Serve(ul)
	// The floor: the least any relay does, on the same Unix socket kind. A
	// bare Go splice to the sink and back, no handshake, no policy, no idle
	// check. What the tunnel server loses against the direct copy beyond
	// what this loses is its own.
	bl, err := net.Listen("unix", filepath.Join(dir, "bare.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	go func() {
		for {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				out, err := net.Dial("tcp", sink)
				if err != nil {
					return
				}
				defer out.Close()
				back := make(chan struct{})
				go func() { io.Copy(c, out); c.(*net.UnixConn).CloseWrite(); close(back) }()
				out.(*net.TCPConn).ReadFrom(c)
				out.(*net.TCPConn).CloseWrite()
				<-back
			}()
		}
	}()

	// The companion, with the proxy's listener as descriptor 3.
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pf, err := pl.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := pl.Addr().String()
	pl.Close()
	agent := exec.Command(bin, "--sim", "--socket", filepath.Join(dir, "qtsm.sock"), "--egress-fd", "3",
		"--egress-allow", "sink.test:"+sinkPort, "--egress-allow", "echo.test:"+echoPort, "--egress-parent", "tcp:"+tl.Addr().String())
	agent.ExtraFiles = []*os.File{pf}
	stderr, _ := agent.StderrPipe()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	defer agent.Process.Kill()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "egress proxy on") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("qtsm-agent's egress proxy did not start")
	}
	viaProxy := func(dest string) (net.Conn, *bufio.Reader, error) {
		return connectAddr(proxyAddr, dest)
	}
	direct2 := func(network, addr string) (net.Conn, *bufio.Reader, error) {
		c, err := net.Dial(network, addr)
		if err != nil {
			return nil, nil, err
		}
		return c, bufio.NewReader(c), nil
	}

	direct := func(addr string) (net.Conn, *bufio.Reader, error) { return direct2("tcp", addr) }

	// 1. Bulk: alternate direct and proxied runs, medians.
	bulk := func(open func() (net.Conn, *bufio.Reader, error)) float64 {
		c, br, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		rand.Read(buf)
		start := time.Now()
		for range mib * 4 {
			if _, err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		line, err := br.ReadString('\n')
		d := time.Since(start)
		if n, _ := strconv.Atoi(strings.TrimSpace(line)); err != nil || n != mib<<20 {
			t.Fatalf("sink counted %q, %v; want %d", line, err, mib<<20)
		}
		return float64(mib) / d.Seconds()
	}
	viaTunnel := func(network, addr, dest string) (net.Conn, *bufio.Reader, error) { // the parent's proxy alone
		c, err := net.Dial(network, addr)
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(c, "%s%s\n", tunnel.Magic, dest)
		if err := tunnel.ReadAnswer(c); err != nil {
			c.Close()
			return nil, nil, err
		}
		return c, bufio.NewReader(c), nil
	}
	// Rounds of the four kinds in turn; besides each kind's median, the
	// median of each round's own ratio (a kind against the direct copy
	// just before it), which a change of machine load between rounds moves
	// less.
	const rounds = 7
	var ds, bs, us, ts, ps, br, ur, tr []float64
	for range rounds {
		ds = append(ds, bulk(func() (net.Conn, *bufio.Reader, error) { return direct(sink) }))
		bs = append(bs, bulk(func() (net.Conn, *bufio.Reader, error) { return direct2("unix", bl.Addr().String()) }))
		us = append(us, bulk(func() (net.Conn, *bufio.Reader, error) {
			return viaTunnel("unix", ul.Addr().String(), "sink.test:"+sinkPort)
		}))
		ts = append(ts, bulk(func() (net.Conn, *bufio.Reader, error) {
			return viaTunnel("tcp", tl.Addr().String(), "sink.test:"+sinkPort)
		}))
		ps = append(ps, bulk(func() (net.Conn, *bufio.Reader, error) { return viaProxy("sink.test:" + sinkPort) }))
		d := ds[len(ds)-1]
		br = append(br, bs[len(bs)-1]/d)
		ur = append(ur, us[len(us)-1]/d)
		tr = append(tr, ts[len(ts)-1]/d)
	}
	for _, x := range [][]float64{ds, bs, us, ts, ps, br, ur, tr} {
		slices.Sort(x)
	}
	m := rounds / 2
	t.Logf("bulk %d MiB, medians of %d rounds (each kind in turn): direct loopback TCP %.0f MiB/s; "+
		"through the parent's tunnel server, tunnels on a Unix socket %.0f MiB/s: ratio %.2f, per-round ratios %.2f..%.2f, median %.2f (goal >= 0.7); "+
		"tunnels on loopback TCP %.0f MiB/s: ratio %.2f, per-round median %.2f; "+
		"through the companion's proxy and the parent (3 connections, every process on the same 2 cores) %.0f MiB/s: ratio %.2f; "+
		"the floor, a bare splice relay on a Unix socket %.0f MiB/s: ratio %.2f, per-round %.2f..%.2f, median %.2f",
		mib, rounds, ds[m], us[m], us[m]/ds[m], ur[0], ur[rounds-1], ur[m], ts[m], ts[m]/ds[m], tr[m], ps[m], ps[m]/ds[m],
		bs[m], bs[m]/ds[m], br[0], br[rounds-1], br[m])

	// 2. Short connections per second, 16 at a time.
	short := func(open func() (net.Conn, *bufio.Reader, error), n int) float64 {
		var wg sync.WaitGroup
		var failed sync.Map
		next := make(chan int, n)
		for i := range n {
			next <- i
		}
		close(next)
		start := time.Now()
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					c, br, err := open()
					if err != nil {
						failed.Store(i, err)
						continue
					}
					c.Write([]byte{'x'})
					b, err := br.ReadByte()
					c.Close()
					if err != nil || b != 'x' {
						failed.Store(i, err)
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		failed.Range(func(k, v any) bool { t.Errorf("short connection %v: %v", k, v); return false })
		return float64(n) / d.Seconds()
	}
	dRate := short(func() (net.Conn, *bufio.Reader, error) { return direct(echoL.Addr().String()) }, 2000)
	pRate := short(func() (net.Conn, *bufio.Reader, error) { return viaProxy("echo.test:" + echoPort) }, 2000)
	t.Logf("short connections (1 byte each way, 16 at a time): direct %.0f/s, tunnels %.0f/s: ratio %.2f", dRate, pRate, pRate/dRate)

	// 3. 200 tunnels open at once.
	const n = 200
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, br, err := viaProxy("echo.test:" + echoPort)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			data := make([]byte, 64<<10)
			rand.Read(data)
			go c.Write(data)
			got := make([]byte, len(data))
			if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("tunnel %d: %v, equal %v", i, err, bytes.Equal(got, data))
			}
		}()
	}
	wg.Wait()
	close(errs)
	lost := 0
	for err := range errs {
		lost++
		t.Error(err)
	}
	rss := vmRSS(agent.Process.Pid)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	t.Logf("%d tunnels at once, 64 KiB each way in each: %d lost or corrupted; the companion's VmRSS with all open: %s", n, lost, rss)
}

func serveTCP(t *testing.T, h func(net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { h(c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

// connectAddr opens a CONNECT tunnel through the proxy at proxyAddr.
func connectAddr(proxyAddr, dest string) (net.Conn, *bufio.Reader, error) {
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", dest, dest)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != 200 {
		c.Close()
		return nil, nil, fmt.Errorf("CONNECT %s: %s", dest, resp.Status)
	}
	return c, br, nil
}

func vmRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	return "?"
}
