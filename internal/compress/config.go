package compress

import (
	"errors"
	"fmt"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/krait-server/krait/internal/httpx"
)

// Content-coding names, as they appear in Accept-Encoding and
// Content-Encoding.
const (
	Zstd   = "zstd"
	Brotli = "br"
	Gzip   = "gzip"
)

// Defaults. Every default is declared here once; Defaults, DefaultCodings
// and DefaultTypes return them.
const (
	// DefaultMinSize is the smallest known body length that is compressed.
	// Below about a kilobyte the response still fits one TCP segment with
	// its head, so compressing saves no round trip and costs CPU.
	DefaultMinSize = 1024

	// The levels are for dynamic content, compressed once per request:
	// fast levels that still get most of the ratio.
	DefaultGzipLevel   = 5 // 1 (fastest) .. 9
	DefaultBrotliLevel = 4 // brotli quality 0 .. 11
	DefaultZstdLevel   = 3 // zstd's scale 1 .. 22; 3 is zstd's own default
)

// DefaultCodings returns the codings krait uses by default, in its order of
// preference among codings a client weighs equally: zstd first (as dense
// as brotli level 4 on text and JSON, and five times faster in pure Go),
// then brotli (Safari and older browsers lack zstd), then gzip.
func DefaultCodings() []string { return []string{Zstd, Brotli, Gzip} }

// DefaultTypes returns the media types compressed by default: text and the
// textual application, image and font types. Types that are already
// compressed (images but SVG, audio, video, WOFF fonts, archives) are not
// listed, so they are never compressed twice.
func DefaultTypes() []string {
	return []string{
		"text/*",
		"application/json",
		"application/*+json",
		"application/x-ndjson",
		"application/javascript",
		"application/x-javascript",
		"application/ecmascript",
		"application/xml",
		"application/*+xml",
		"application/yaml",
		"application/x-yaml",
		"application/toml",
		"application/wasm",
		"application/graphql",
		"application/x-www-form-urlencoded",
		"application/vnd.apple.mpegurl",
		"application/vnd.ms-fontobject",
		"application/x-font-ttf",
		"font/ttf",
		"font/otf",
		"image/svg+xml",
		"image/x-icon",
		"image/vnd.microsoft.icon",
		"image/bmp",
	}
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Codings:     DefaultCodings(),
		MinSize:     DefaultMinSize,
		Types:       DefaultTypes(),
		GzipLevel:   DefaultGzipLevel,
		BrotliLevel: DefaultBrotliLevel,
		ZstdLevel:   DefaultZstdLevel,
	}
}

// Config says what is compressed and how. Every field is used as given:
// start from Defaults.
type Config struct {
	// Codings lists the content codings krait may apply ("zstd", "br",
	// "gzip"), in the order it prefers them when the client's
	// Accept-Encoding weighs several equally. Empty disables compression.
	Codings []string

	// MinSize is the smallest body, in bytes, that is compressed when its
	// length is known in advance. A body of unknown length (a streamed
	// response) is always compressed. An empty body never is.
	MinSize int64

	// Types lists the media types that are compressed, matched against
	// the response's Content-Type without its parameters, case-
	// insensitively: "type/subtype" exactly, "type/*" any subtype of type,
	// "type/*+suffix" any subtype of type with that structured syntax
	// suffix ("application/*+json" matches application/ld+json). A
	// response without Content-Type is not compressed.
	Types []string

	// GzipLevel is the gzip level, 1 (fastest) to 9 (densest).
	GzipLevel int
	// BrotliLevel is the brotli quality, 0 (fastest) to 11 (densest).
	BrotliLevel int
	// ZstdLevel is the zstd level on zstd's own scale, 1 to 22; the
	// encoder maps it to its four speeds (1-2 fastest, 3-5 default, 6-9
	// better, 10+ best).
	ZstdLevel int
}

// typePattern is one compiled entry of Config.Types.
type typePattern struct {
	typ string // lower case
	sub string // lower case; "" with any, "+suffix" with suffix
	any bool   // "type/*"
	suf bool   // "type/*+suffix"
}

func parseType(s string) (typePattern, error) {
	low := strings.ToLower(strings.TrimSpace(s))
	typ, sub, ok := strings.Cut(low, "/")
	if !ok || !isToken(typ) || strings.Contains(typ, "*") || sub == "" {
		return typePattern{}, fmt.Errorf("compress: media type %q: want type/subtype, type/* or type/*+suffix", s)
	}
	switch {
	case sub == "*":
		return typePattern{typ: typ, any: true}, nil
	case strings.HasPrefix(sub, "*+"):
		if !isToken(sub[2:]) {
			return typePattern{}, fmt.Errorf("compress: media type %q: invalid suffix", s)
		}
		return typePattern{typ: typ, sub: sub[1:], suf: true}, nil
	case !isToken(sub) || strings.Contains(sub, "*"):
		return typePattern{}, fmt.Errorf("compress: media type %q: invalid subtype", s)
	}
	return typePattern{typ: typ, sub: sub}, nil
}

// isToken reports whether s is an RFC 9110 token (1*tchar).
func isToken(s string) bool { return httpx.ValidToken([]byte(s)) }

// validate checks cfg and compiles its codings and types.
func (cfg *Config) compile() (codings []coding, types []typePattern, err error) {
	var errs []error
	seen := map[coding]bool{}
	for _, name := range cfg.Codings {
		c := codingByName(name)
		switch {
		case c == none:
			errs = append(errs, fmt.Errorf("compress: unknown coding %q (want zstd, br or gzip)", name))
		case seen[c]:
			errs = append(errs, fmt.Errorf("compress: coding %q listed twice", name))
		default:
			seen[c] = true
			codings = append(codings, c)
		}
	}
	if cfg.MinSize < 0 {
		errs = append(errs, fmt.Errorf("compress: minimum size %d is negative", cfg.MinSize))
	}
	for _, s := range cfg.Types {
		p, err := parseType(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		types = append(types, p)
	}
	if seen[gzipC] && (cfg.GzipLevel < 1 || cfg.GzipLevel > 9) {
		errs = append(errs, fmt.Errorf("compress: gzip level %d out of range 1..9", cfg.GzipLevel))
	}
	if seen[brotliC] && (cfg.BrotliLevel < 0 || cfg.BrotliLevel > 11) {
		errs = append(errs, fmt.Errorf("compress: brotli level %d out of range 0..11", cfg.BrotliLevel))
	}
	if seen[zstdC] && (cfg.ZstdLevel < 1 || cfg.ZstdLevel > 22) {
		errs = append(errs, fmt.Errorf("compress: zstd level %d out of range 1..22", cfg.ZstdLevel))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return codings, types, nil
}

// zstdLevel maps zstd's scale to the encoder's speeds.
func zstdLevel(level int) zstd.EncoderLevel { return zstd.EncoderLevelFromZstd(level) }
