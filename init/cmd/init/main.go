// Command init is the enclave's first process (PID 1). See package
// github.com/qtenclave/enclave/init (init/doc.go) for what it does and the
// console lines it writes.
package main

import "github.com/qtenclave/enclave/init/boot"

func main() { boot.Main() }
