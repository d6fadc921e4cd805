// Package goflow2pb holds goflow2 v2's FlowMessage generated from its
// published .proto (flow.proto here), for tests only: they decode the
// goflow2-pb Kafka messages as a goflow2 consumer would. Regenerate with
// protoc and protoc-gen-go (the version go.mod names for
// google.golang.org/protobuf): go generate ./dataplane/export/internal/goflow2pb
package goflow2pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative flow.proto
