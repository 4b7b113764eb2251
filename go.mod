module github.com/krait-server/krait

go 1.26.8

require github.com/coder/websocket v1.8.15

require (
	github.com/andybalholm/brotli v1.3.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
)
