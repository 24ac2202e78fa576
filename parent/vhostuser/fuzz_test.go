package vhostuser

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/qtenclave/enclave/parent/vhostuser/vhostusertest"
	"github.com/qtenclave/enclave/parent/virtq"
)

type nopDevice struct{}

func (nopDevice) Features() uint64                     { return FeatureVersion1 }
func (nopDevice) NumQueues() int                       { return 2 }
func (nopDevice) Config() []byte                       { return make([]byte, 8) }
func (nopDevice) StartQueue(int, *virtq.Queue, func()) {}
func (nopDevice) StopQueue(int)                        {}
func (nopDevice) Kick(int)                             {}
func (nopDevice) Reset()                               {}

// FuzzMessages feeds a back-end an arbitrary stream of messages (without
// descriptors). The session must end or answer without panicking.
func FuzzMessages(f *testing.F) {
	msg := func(req, flags uint32, payload []byte) []byte {
		b := binary.NativeEndian.AppendUint32(nil, req)
		b = binary.NativeEndian.AppendUint32(b, flags)
		b = binary.NativeEndian.AppendUint32(b, uint32(len(payload)))
		return append(b, payload...)
	}
	var seed []byte
	seed = append(seed, msg(reqGetFeatures, 1, nil)...)
	seed = append(seed, msg(reqSetFeatures, 9, putU64(FeatureVersion1|FeatureProtocolFeatures))...)
	seed = append(seed, msg(reqSetVringNum, 9, vringState{0, 64}.marshal())...)
	seed = append(seed, msg(reqSetVringAddr, 9, make([]byte, 40))...)
	seed = append(seed, msg(reqSetVringKick, 9, putU64(vringNoFD))...)
	seed = append(seed, msg(reqSetVringEnable, 9, vringState{0, 1}.marshal())...)
	seed = append(seed, msg(reqGetVringBase, 1, vringState{0, 0}.marshal())...)
	seed = append(seed, msg(reqGetConfig, 1, append(make([]byte, 4), 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8))...)
	f.Add(seed)
	f.Add(msg(reqSetMemTable, 9, append(vringState{1, 0}.marshal(), make([]byte, 32)...)))
	f.Fuzz(func(t *testing.T, stream []byte) {
		a, b, err := vhostusertest.Pair()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		done := make(chan error, 1)
		be := &Backend{Device: nopDevice{}}
		go func() { done <- be.ServeConn(b) }()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := a.Read(buf); err != nil {
					return
				}
			}
		}()
		a.Write(stream)
		a.CloseWrite()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end after the stream closed")
		}
	})
}
