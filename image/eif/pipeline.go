package eif

import (
	"hash"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"
)

// The pipeline fans every chunk of section bytes out to two workers:
//
//	worker A: the PCR0 hash (image: kernel, cmdline, every ramdisk)
//	worker B: the PCR1 or PCR2 hash, the running CRC, and the write
//
// Chunks come from a fixed pool, so memory is bounded by
// pipelineChunks*pipelineChunkSize whatever the section sizes. Each worker
// sees the chunks in the order they were sent. A barrier is a chunk that both
// workers acknowledge: once sync returns, every earlier chunk is hashed and
// written and the hashes may be read by the caller.

const (
	pipelineChunkSize = 1 << 20
	pipelineChunks    = 6
)

type chunk struct {
	buf  []byte // len = capacity in use is n
	n    int
	off  int64     // file offset to write at; <0: no write
	pcr0 hash.Hash // nil: not measured in PCR0
	aux  hash.Hash // PCR1 or PCR2; nil: none
	crc  bool      // include in the running CRC

	barrier chan barrierReply // non-nil: a barrier, not data
	refs    atomic.Int32
}

type barrierReply struct {
	fromB bool
	crc   uint32 // B only: CRC of the data since the previous barrier
	err   error  // B only: first write error
}

type pipeline struct {
	w    io.WriterAt // nil: measure only
	a, b chan *chunk
	free chan *chunk
	wg   sync.WaitGroup

	// Owned by worker B.
	crc uint32
	err error
	// failed is set by B on its first write error, so that the producer can
	// stop early instead of streaming the rest of a section.
	failed atomic.Bool
}

// newPipeline starts the workers; chunkSize is the buffer size (at most
// pipelineChunkSize; small inputs need small buffers).
func newPipeline(w io.WriterAt, chunkSize int) *pipeline {
	chunkSize = min(max(chunkSize, 4096), pipelineChunkSize)
	p := &pipeline{
		w:    w,
		a:    make(chan *chunk, pipelineChunks),
		b:    make(chan *chunk, pipelineChunks),
		free: make(chan *chunk, pipelineChunks),
	}
	for range pipelineChunks {
		p.free <- &chunk{buf: make([]byte, chunkSize)}
	}
	p.wg.Add(2)
	go p.runA()
	go p.runB()
	return p
}

// get returns an empty chunk from the pool, blocking while all are in flight.
func (p *pipeline) get() *chunk {
	c := <-p.free
	c.n, c.off, c.pcr0, c.aux, c.crc = 0, -1, nil, nil, false
	return c
}

func (p *pipeline) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		p.free <- c
	}
}

// send hands a filled chunk to both workers; the chunk returns to the pool
// when both are done with it.
func (p *pipeline) send(c *chunk) {
	if c.n == 0 {
		p.free <- c
		return
	}
	c.refs.Store(2)
	p.a <- c
	p.b <- c
}

// sync waits until every chunk sent so far is processed and returns the CRC
// of the CRC-flagged bytes since the previous sync, and B's first error.
func (p *pipeline) sync() (uint32, error) {
	reply := make(chan barrierReply, 2)
	c := &chunk{barrier: reply}
	p.a <- c
	p.b <- c
	r := <-reply
	if !r.fromB {
		r = <-reply
	} else {
		<-reply
	}
	return r.crc, r.err
}

// stop ends both workers; the pipeline must not be used afterwards.
func (p *pipeline) stop() {
	close(p.a)
	close(p.b)
	p.wg.Wait()
}

func (p *pipeline) runA() {
	defer p.wg.Done()
	for c := range p.a {
		if c.barrier != nil {
			c.barrier <- barrierReply{}
			continue
		}
		if c.pcr0 != nil {
			c.pcr0.Write(c.buf[:c.n])
		}
		p.release(c)
	}
}

func (p *pipeline) runB() {
	defer p.wg.Done()
	for c := range p.b {
		if c.barrier != nil {
			c.barrier <- barrierReply{fromB: true, crc: p.crc, err: p.err}
			p.crc = 0
			continue
		}
		data := c.buf[:c.n]
		if c.aux != nil {
			c.aux.Write(data)
		}
		if c.crc {
			p.crc = crc32.Update(p.crc, crc32.IEEETable, data)
		}
		if c.off >= 0 && p.w != nil && p.err == nil {
			if _, err := p.w.WriteAt(data, c.off); err != nil {
				p.err = err
				p.failed.Store(true)
			}
		}
		p.release(c)
	}
}
