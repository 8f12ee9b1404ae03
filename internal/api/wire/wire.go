// Package wire is the HTTP API's contract: the JSON bodies of its
// requests and responses, its headers, its limits and the token file a
// client reads. The daemon (internal/api) converts the platform's and the
// boot engines' values to these types; the client (internal/client) and
// the benchmark use these alone, so that a change of an inner type never
// changes what goes over the wire, and a change of the wire is a change
// of this file.
//
// Every field has an explicit snake_case JSON name; durations are whole
// microseconds in fields ending in _us. Errors are always an ErrorBody;
// the status and the type of each error are errdefs.Table's.
package wire

import "time"

// TokenFile is the name of the API token's file in the daemon's state
// dir; clients send the token as "Authorization: Bearer <token>".
const TokenFile = "api.token"

// Body limits: a deploy carries code (base64 inflates it by a third), an
// invocation carries an event. A larger body is answered 413 TooLarge.
const (
	MaxDeployBody = 64 << 20
	MaxEventBody  = 6 << 20
	// MaxLogHeader bounds each of the X-Catalyzer-Stdout/-Stderr headers
	// (the tail of the output, base64).
	MaxLogHeader = 4 << 10
)

// Response headers of an invocation.
const (
	HeaderBoot      = "X-Catalyzer-Boot"       // boot mode of the serving instance
	HeaderBootUs    = "X-Catalyzer-Boot-Us"    // boot start to handler entry, µs; 0 when reused
	HeaderReused    = "X-Catalyzer-Reused"     // "true" when a live instance served it
	HeaderPhases    = "X-Catalyzer-Phases"     // name=µs,... of the boot
	HeaderAcceptUs  = "X-Catalyzer-Accept-Us"  // accept to response, µs (taken as the response is written)
	HeaderHandlerUs = "X-Catalyzer-Handler-Us" // handler entry to exit, µs, as the instance's agent timed it
	HeaderInstance  = "X-Catalyzer-Instance"
	HeaderStdout    = "X-Catalyzer-Stdout" // base64 tail of the handler's stdout
	HeaderStderr    = "X-Catalyzer-Stderr"
	HeaderTruncated = "X-Catalyzer-Truncated"
	// HeaderLogsTruncated is "true" when the instance sent more log
	// frames than one invocation keeps (agent.MaxLogs, agent.MaxLogBytes).
	HeaderLogsTruncated = "X-Catalyzer-Logs-Truncated"
)

// DeployRequest is the body of PUT /v1/functions/{name}. Exactly one of
// CodePath and CodeTgzB64 is set; zero values take the daemon's defaults.
type DeployRequest struct {
	Runtime      string            `json:"runtime"`
	Handler      string            `json:"handler"`
	CodePath     string            `json:"code_path,omitempty"`
	CodeTgzB64   string            `json:"code_tgz_b64,omitempty"`
	MemoryMB     int               `json:"memory_mb,omitempty"`
	TimeoutMs    int               `json:"timeout_ms,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	MaxInstances int               `json:"max_instances,omitempty"`
	Network      string            `json:"network,omitempty"`
}

// Function is a deployed function: the body of a deploy's answer and of
// GET /v1/functions/{name}.
type Function struct {
	Name         string            `json:"name"`
	Runtime      string            `json:"runtime"`
	Handler      string            `json:"handler"`
	CodeDigest   string            `json:"code_digest"`
	MemoryMB     int               `json:"memory_mb"`
	TimeoutMs    int               `json:"timeout_ms"`
	Env          map[string]string `json:"env,omitempty"`
	MaxInstances int               `json:"max_instances"`
	Network      string            `json:"network"`
	// UIDSlot picks the function's host uid range.
	UIDSlot   int       `json:"uid_slot"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// CodePath is where its code is stored on the daemon's host.
	CodePath string `json:"code_path"`
	// Template is the state of its fork template: "building", "ready",
	// "failed: <why>" (fork boot is then unavailable) or "none".
	Template string `json:"template"`
	// Image is the state of its checkpoint image (cold and warm boot),
	// in the same words.
	Image string `json:"image"`
}

// FunctionList is the body of GET /v1/functions, sorted by name.
type FunctionList struct {
	Functions []Function `json:"functions"`
}

// Instances is the body of GET /v1/functions/{name}/instances.
type Instances struct {
	Instances []Instance `json:"instances"` // never null
	Template  Template   `json:"template"`
	Image     Image      `json:"image"`
}

// Instance is one live instance.
type Instance struct {
	ID    string `json:"id"`
	Boot  string `json:"boot"`  // scratch, fork, cold, warm
	State string `json:"state"` // ready (idle), busy, dead
	Pid   int    `json:"pid"`
	PSSKB int64  `json:"pss_kb"` // -1 when it cannot be read
}

// Template is a function's fork template. Only Status is set unless it
// is "ready".
type Template struct {
	Status string `json:"status"`
	Pid    int    `json:"pid,omitempty"`
	// KilledAtFreeze counts the processes the template's init left
	// running, killed when it was frozen.
	KilledAtFreeze int      `json:"killed_at_freeze,omitempty"`
	PSSKB          int64    `json:"pss_kb,omitempty"`
	Pool           *EnvPool `json:"pool,omitempty"`
}

// EnvPool counts the pre-built sandbox envs of a template's pool.
type EnvPool struct {
	Ready    int    `json:"ready"`     // envs ready now
	Built    uint64 `json:"built"`     // envs built in the background
	Taken    uint64 `json:"taken"`     // boots served from the pool
	OnDemand uint64 `json:"on_demand"` // boots that built an env on the spot (pool empty)
	Failures uint64 `json:"failures"`  // failed builds, background and on demand
	// MeanBuildUs is the mean duration of a successful build (the refill
	// cost per env), µs.
	MeanBuildUs int64 `json:"mean_build_us"`
}

// Image is a function's checkpoint image. Only Status is set unless it
// is "ready".
type Image struct {
	Status string `json:"status"`
	Dir    string `json:"dir,omitempty"`
	// PagesBytes is what pages.img occupies on disk (it is sparse);
	// PagesApparent its size.
	PagesBytes    int64 `json:"pages_bytes,omitempty"`
	PagesApparent int64 `json:"pages_apparent_bytes,omitempty"`
	PlanEntries   int   `json:"plan_entries,omitempty"`
	WorkingSet    int64 `json:"working_set_bytes,omitempty"`
}

// Drained is the body of DELETE /v1/functions/{name}/instances: how many
// idle instances were destroyed.
type Drained struct {
	Drained int `json:"drained"`
}

// Floor is the body of POST /v1/functions/{name}/fork-floor.
type Floor struct {
	SamplesUs []int64 `json:"samples_us"`
}

// Health is the body of GET /healthz.
type Health struct {
	Status string `json:"status"` // "ok"
}

// ErrorBody is the shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names an error's type (errdefs.Table's, or a function's
// exception class) and says what happened; a function's error carries
// its trace and output.
type ErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Trace   string `json:"trace,omitempty"`
	Stdout  string `json:"stdout,omitempty"`
	Stderr  string `json:"stderr,omitempty"`
}
