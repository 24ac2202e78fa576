// Package clib holds libqtsm and libnsm, drop-in C libraries with the
// interfaces of Huawei's libqtsm (Qingtian) and AWS's nsm-lib (Nitro) that
// go through qtsm-agent's POST /v1/raw instead of opening the device
// behind the agent's back. The C sources, headers and Makefile live in
// include/, src/ and test/ (README.md says how to build against them); this
// Go package holds no code, only the tests that build the libraries with
// the system C compiler and run the C tests against an agent on the
// simulator.
package clib
