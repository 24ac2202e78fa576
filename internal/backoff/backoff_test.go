package backoff

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	fail := errors.New("fail")
	for _, tc := range []struct {
		name      string
		p         Policy
		succeedAt int // 0: never
		attempts  int
		waits     []time.Duration
		err       error
	}{
		{"first try", Policy{Attempts: 3, Initial: time.Millisecond}, 1, 1, nil, nil},
		{"third try", Policy{Attempts: 5, Initial: 25, Max: 800}, 3, 3, []time.Duration{25, 50}, nil},
		{"capped", Policy{Attempts: 8, Initial: 25, Max: 800}, 0, 8, []time.Duration{25, 50, 100, 200, 400, 800, 800}, fail},
		{"no cap", Policy{Attempts: 4, Initial: 1}, 0, 4, []time.Duration{1, 2, 4}, fail},
		{"zero attempts is one", Policy{}, 0, 1, nil, fail},
	} {
		var waits, told []time.Duration
		l := Loop{Policy: tc.p,
			Sleep:   func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
			OnRetry: func(_ int, _ error, d time.Duration) { told = append(told, d) },
		}
		n, err := l.Do(context.Background(), func(a int) error {
			if a == tc.succeedAt {
				return nil
			}
			return fail
		})
		if n != tc.attempts || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: Do = %d, %v; want %d, %v", tc.name, n, err, tc.attempts, tc.err)
		}
		if !slices.Equal(waits, tc.waits) || !slices.Equal(told, tc.waits) {
			t.Errorf("%s: waits %v, told %v; want %v", tc.name, waits, told, tc.waits)
		}
	}
}

func TestDoStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := Loop{Policy: Policy{Attempts: 100, Initial: time.Hour}}.Do(ctx, func(int) error { return errors.New("x") })
	if n != 1 || err == nil || ctx.Err() == nil {
		t.Errorf("Do = %d, %v (ctx %v); want 1 attempt, its error, ctx done", n, err, ctx.Err())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Do took %v after its context ended", d)
	}
}
