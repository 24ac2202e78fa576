//go:build !nosim

package main

import (
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// haveSim: this build can serve the simulator.
const haveSim = true

// openSim returns a software secure module of the vendor's dialect. Its
// documents are signed by a throwaway root that no verifier trusts by
// default: for development only.
func openSim(vendor qtsm.Vendor) (qtsm.Transport, error) {
	return sim.New(sim.Options{Vendor: vendor})
}
