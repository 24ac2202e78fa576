//go:build nosim

package main

import (
	"errors"

	"github.com/qtenclave/enclave/qtsm"
)

// haveSim: this build cannot serve the simulator.
const haveSim = false

// openSim: this build has no simulator (built with -tags nosim).
func openSim(qtsm.Vendor) (qtsm.Transport, error) {
	return nil, errors.New("--sim: this qtsm-agent was built without the simulator (-tags nosim)")
}
