package worker

import "testing"

func TestLastLines(t *testing.T) {
	cases := []struct {
		in           string
		lines, bytes int
		want         string
	}{
		{"a\nb\nc\n", 20, 4096, "a\nb\nc"},
		{"a\nb\nc\n", 2, 4096, "b\nc"},
		{"a\nb\nc", 1, 4096, "c"},
		{"", 5, 4096, ""},
		{"aaaa\nbbbb\ncc\n", 20, 8, "bbbb\ncc"}, // "a\nbbbb\ncc" less the partial line
		{"aaaa\nbbbb\ncc\n", 20, 7, "bbbb\ncc"},
		{"aaaa\nbbbb\ncc\n", 20, 6, "cc"},
		{"abcdef", 20, 3, "def"}, // one overlong line: its end
	}
	for _, c := range cases {
		if got := lastLines(c.in, c.lines, c.bytes); got != c.want {
			t.Errorf("lastLines(%q, %d, %d) = %q, want %q", c.in, c.lines, c.bytes, got, c.want)
		}
	}
}
