package config

import (
	"testing"
	"time"
)

// TestSubStructs: the flags of one component land in its sub-struct,
// which is what is passed to it whole (Worker to the supervisor and the
// workers, HTTP to the engine), and the values not given are Default's.
func TestSubStructs(t *testing.T) {
	s, err := parse([]string{"app:application", "--boot-timeout", "7", "--threads", "3",
		"--keep-alive", "9", "--limit-request-line", "5000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if s.Worker.App != "app:application" || s.Worker.BootTimeout != 7*time.Second || s.Worker.Threads != 3 ||
		s.Worker.Python != "/usr/bin/python3" || s.Worker.Interface != def.Interface {
		t.Errorf("Worker = %+v", s.Worker)
	}
	if s.HTTP.KeepAlive != 9*time.Second || s.HTTP.LimitRequestLine != 5000 ||
		s.HTTP.HeaderTimeout != def.HeaderTimeout || s.HTTP.MaxHeadMemory != def.MaxHeadMemory ||
		s.HTTP.MaxHeaderBytes != def.MaxHeaderBytes || s.HTTP.WriteTimeout != def.WriteTimeout {
		t.Errorf("HTTP = %+v", s.HTTP)
	}
	// Every engine setting has its one default here, none left zero.
	h := def.HTTP
	if h.LimitRequestLine <= 0 || h.LimitRequestFields <= 0 || h.LimitRequestFieldSize <= 0 || h.KeepAlive <= 0 ||
		h.HeaderTimeout <= 0 || h.MaxHeaderBytes <= 0 || h.MaxHeadMemory <= 0 || h.WriteTimeout <= 0 {
		t.Errorf("Default().HTTP has a zero field: %+v", h)
	}
	w := def.Worker
	if w.Threads < 1 || w.BootTimeout <= 0 || w.Interface == "" || w.Loop == "" || w.Lifespan == "" {
		t.Errorf("Default().Worker has a zero field: %+v", w)
	}
}
