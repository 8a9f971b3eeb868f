module github.com/orchestrator-state/orchestrator-state/examples/go-client

go 1.19

// The versions Debian 12 packages (golang-google-grpc-dev,
// golang-google-protobuf-dev, golang-google-genproto-dev), which build.sh
// vendors offline. With a module proxy, `go mod tidy` fetches them instead.
require (
	google.golang.org/genproto v0.0.0-20200413115906-b5235f6e0aee
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
