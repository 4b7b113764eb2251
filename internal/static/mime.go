package static

import (
	"mime"
	"path"
	"strings"
)

// builtinTypes are the web's common types, looked up before
// mime.TypeByExtension so that responses do not depend on the host's
// /etc/mime.types (which may lack .woff2 or .wasm, or map .js to
// application/x-javascript).
var builtinTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".htm":         "text/html; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".js":          "text/javascript; charset=utf-8", // RFC 9239
	".mjs":         "text/javascript; charset=utf-8",
	".cjs":         "text/javascript; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json", // source maps
	".webmanifest": "application/manifest+json",
	".xml":         "text/xml; charset=utf-8",
	".txt":         "text/plain; charset=utf-8",
	".csv":         "text/csv; charset=utf-8",
	".md":          "text/markdown; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".apng":        "image/apng",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".ico":         "image/x-icon",
	".bmp":         "image/bmp",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".eot":         "application/vnd.ms-fontobject",
	".wasm":        "application/wasm",
	".pdf":         "application/pdf",
	".zip":         "application/zip",
	".gz":          "application/gzip",
	".br":          "application/octet-stream",
	".zst":         "application/zstd",
	".mp4":         "video/mp4",
	".webm":        "video/webm",
	".mp3":         "audio/mpeg",
	".ogg":         "audio/ogg",
	".wav":         "audio/wav",
	".m4a":         "audio/mp4",
	".vtt":         "text/vtt; charset=utf-8",
}

const defaultType = "application/octet-stream"

// contentType is the Content-Type for a file name: the built-in table,
// then mime.TypeByExtension, then application/octet-stream. Text types get
// charset=utf-8 when they name no charset.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if ext == "" {
		return defaultType
	}
	if t, ok := builtinTypes[ext]; ok {
		return t
	}
	t := mime.TypeByExtension(ext)
	if t == "" {
		return defaultType
	}
	if strings.HasPrefix(t, "text/") && !strings.Contains(t, "charset=") {
		t += "; charset=utf-8"
	}
	return t
}

// fingerprinted reports whether a file name carries a content hash, so
// that its contents never change under that name and it may be cached
// for a year as immutable. It recognises:
//
//   - a dot-separated hex token of 8 to 64 characters with at least one
//     digit and one letter, not the first token: Django's
//     ManifestStaticFilesStorage ("app.3f2a1b9c8d7e.css", 12 hex),
//     webpack's [name].[contenthash] ("main.4f3a9c2b1d0e7a6b5c4d.js");
//   - a dash-separated final token of the stem that is such a hex token,
//     or exactly 8 characters of [A-Za-z0-9_-] mixing upper case, lower
//     case and digits: Vite/Rollup ("index-BkD3f9aZ.js", older Vite
//     "index-5f3a2b1c.js"), Next.js ("main-4f3a9c2b1d0e7a6b.js").
//
// The rules err on the side of "not fingerprinted": a miss only costs a
// revalidation after --static-max-age, while a false positive would pin a
// changed file in browsers for a year. Dates ("report.20240101.pdf") and
// words ("chapter-section1.js") are not taken for hashes.
func fingerprinted(name string) bool {
	name = path.Base(name)
	dot := strings.IndexByte(name, '.')
	if dot <= 0 {
		return false
	}
	stem := name[:strings.LastIndexByte(name, '.')]
	// Dot tokens after the first: "app.3f2a1b9c8d7e" in "app.3f2a1b9c8d7e.css".
	for _, tok := range strings.Split(stem, ".")[1:] {
		if hexHash(tok) {
			return true
		}
	}
	// The final dash token of the first dot token: "index-BkD3f9aZ".
	first := name[:dot]
	if i := strings.LastIndexByte(first, '-'); i > 0 {
		if tok := first[i+1:]; hexHash(tok) || mixedHash(tok) {
			return true
		}
	}
	// Rollup's alphabet includes '-': "index-Bk-3f9aZ" has its hash in
	// the last 8 characters after a dash.
	if n := len(first); n >= 10 && first[n-9] == '-' && mixedHash(first[n-8:]) {
		return true
	}
	return false
}

func hexHash(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	var digit, letter bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digit = true
		case 'a' <= c && c <= 'f':
			letter = true
		default:
			return false
		}
	}
	return digit && letter
}

func mixedHash(s string) bool {
	if len(s) != 8 {
		return false
	}
	var digit, upper, lower bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digit = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case 'a' <= c && c <= 'z':
			lower = true
		case c == '_' || c == '-':
		default:
			return false
		}
	}
	return digit && upper && lower
}
