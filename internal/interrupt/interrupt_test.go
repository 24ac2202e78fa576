package interrupt

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"
)

func TestContextEndsOnSIGTERM(t *testing.T) {
	ctx, stop := Context(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not ended by SIGTERM")
	}
	var ie *Error
	if cause := context.Cause(ctx); !errors.As(cause, &ie) || cause.Error() != "interrupted by SIGTERM" {
		t.Errorf("cause = %v, want interrupted by SIGTERM", cause)
	}
	wrapped := fmt.Errorf("corrupt tar stream: content: %w", ctx.Err())
	if got := Cause(ctx, wrapped); got.Error() != "interrupted by SIGTERM" {
		t.Errorf("Cause(%v) = %v, want interrupted by SIGTERM", wrapped, got)
	}
	if got := Cause(context.Background(), wrapped); got != wrapped {
		t.Errorf("Cause with a live context = %v, want the error itself", got)
	}
}
