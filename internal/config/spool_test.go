package config

import (
	"errors"
	"testing"
)

// The response spooling flags: defaults, values, and errors that name the
// flag as typed.
func TestParseServeBufferResponse(t *testing.T) {
	s, err := parse([]string{"a:b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.BufferResponse != 1<<20 || s.BufferDir != "" || s.MaxTempFileSize != 1<<30 || s.BufferResponseMemory != 64<<20 {
		t.Fatalf("defaults: %d %q %d %d", s.BufferResponse, s.BufferDir, s.MaxTempFileSize, s.BufferResponseMemory)
	}
	dir := t.TempDir()
	s, err = parse([]string{"a:b", "--buffer-response", "0", "--buffer-dir", dir, "--max-temp-file-size", "0", "--buffer-response-memory", "1000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.BufferResponse != 0 || s.BufferDir != dir || s.MaxTempFileSize != 0 || s.BufferResponseMemory != 1000 {
		t.Fatalf("parsed: %d %q %d %d", s.BufferResponse, s.BufferDir, s.MaxTempFileSize, s.BufferResponseMemory)
	}
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"a:b", "--buffer-response", "-1"}, "--buffer-response"},
		{[]string{"a:b", "-buffer-response", "2000000000"}, "-buffer-response"},
		{[]string{"a:b", "--max-temp-file-size", "-1"}, "--max-temp-file-size"},
		{[]string{"a:b", "--buffer-response-memory", "0"}, "--buffer-response-memory"},
		{[]string{"a:b", "--buffer-dir", dir + "/missing"}, "--buffer-dir"},
	} {
		_, err := parse(tc.args, nil)
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Flag != tc.flag {
			t.Errorf("%v: got %v, want a UsageError naming %s", tc.args, err, tc.flag)
		}
	}
}
