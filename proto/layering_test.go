package proto_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/qtenclave/enclave/"

// goList runs go list with args in the module root and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	cmd := exec.Command(goTool, append([]string{"list"}, args...)...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

// TestLayering holds the guest/host boundary: host code (image, rootfs,
// parent) never imports init's tree, tests included; what both sides agree
// on lives under proto/, which imports only the standard library (and
// other proto packages).
func TestLayering(t *testing.T) {
	for _, dep := range goList(t, "-test", "-deps", "./image/...", "./rootfs/...", "./parent/...") {
		if strings.HasPrefix(dep, module+"init/") || dep == module+"init" {
			t.Errorf("host code depends on %s", dep)
		}
	}
	for _, line := range goList(t, "-f", `{{.ImportPath}}:{{join .Imports ","}}`, "./proto/...") {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Split(imports, ",") {
			if imp != "" && strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && !strings.HasPrefix(imp, module+"proto/") {
				t.Errorf("%s imports %s: proto packages use the standard library only", pkg, imp)
			}
		}
	}
}
