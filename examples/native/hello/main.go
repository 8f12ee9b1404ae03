// Command hello is the native (Go SDK) example function. Build it with
// examples/build.sh; the handler name is the binary's path, "hello".
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/catalyzer/catalyzer/sdk/go/function"
)

func handler(ctx context.Context, event json.RawMessage) (any, error) {
	var in struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(event, &in) // any event is fine; a non-object just means no name
	if in.Name == "" {
		in.Name = "world"
	}
	fmt.Println("hello from go:", in.Name)
	return map[string]any{
		"hello":      in.Name,
		"runtime":    "native-go",
		"pid":        os.Getpid(),
		"function":   function.FunctionName(ctx),
		"invocation": function.InvocationID(ctx),
	}, nil
}

func main() { function.Start(handler) }
