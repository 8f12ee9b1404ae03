// Package api is the daemon's HTTP/JSON API. It holds handlers only: the
// work is the platform's, and every error is mapped to a status code by
// errdefs.Table (errorStatus), the table the platform's metrics use too.
//
//	PUT    /v1/functions/{name}          deploy (201 created, 200 replaced)
//	GET    /v1/functions                 list
//	GET    /v1/functions/{name}          show
//	DELETE /v1/functions/{name}          delete (204)
//	POST   /v1/functions/{name}/invoke   invoke: ?boot=scratch|fork|cold|warm|auto
//	GET    /metrics                      Prometheus
//	GET    /healthz                      liveness (the only route without a token)
//
// Every request but GET /healthz must carry "Authorization: Bearer
// <token>", the daemon's token (LoadOrCreateToken); others are answered
// 401. Errors are always {"error": {"type": ..., "message": ...}}.
package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/platform"
)

// Body limits: a deploy carries code (base64 inflates it by a third), an
// invocation carries an event.
const (
	MaxDeployBody = 64 << 20
	MaxEventBody  = 6 << 20
	// MaxLogHeader bounds each of the X-Catalyzer-Stdout/-Stderr headers
	// (the tail of the output, base64).
	MaxLogHeader = 4 << 10
)

// Response headers of an invocation.
const (
	HeaderBoot      = "X-Catalyzer-Boot"      // boot mode of the serving instance
	HeaderBootUs    = "X-Catalyzer-Boot-Us"   // boot start to handler entry, µs; 0 when reused
	HeaderReused    = "X-Catalyzer-Reused"    // "true" when a live instance served it
	HeaderPhases    = "X-Catalyzer-Phases"    // name=µs,... of the boot
	HeaderAcceptUs  = "X-Catalyzer-Accept-Us" // accept to response, µs (taken as the response is written)
	HeaderInstance  = "X-Catalyzer-Instance"
	HeaderStdout    = "X-Catalyzer-Stdout" // base64 tail of the handler's stdout
	HeaderStderr    = "X-Catalyzer-Stderr"
	HeaderTruncated = "X-Catalyzer-Truncated"
	// HeaderLogsTruncated is "true" when the instance sent more log
	// frames than one invocation keeps (agent.MaxLogs, agent.MaxLogBytes).
	HeaderLogsTruncated = "X-Catalyzer-Logs-Truncated"
)

// Server serves the API over a platform.
type Server struct {
	p     *platform.Platform
	log   *slog.Logger
	mux   *http.ServeMux
	token string
}

// New returns the API handler for p. Requests must carry token (see
// LoadOrCreateToken); an empty token admits nobody but /healthz.
func New(p *platform.Platform, log *slog.Logger, token string) *Server {
	s := &Server{p: p, log: log, mux: http.NewServeMux(), token: token}
	s.mux.HandleFunc("PUT /v1/functions/{name}", s.deploy)
	s.mux.HandleFunc("GET /v1/functions", s.list)
	s.mux.HandleFunc("GET /v1/functions/{name}", s.get)
	s.mux.HandleFunc("DELETE /v1/functions/{name}", s.delete)
	s.mux.HandleFunc("POST /v1/functions/{name}/invoke", s.invoke)
	s.mux.HandleFunc("GET /v1/functions/{name}/instances", s.instances)
	s.mux.HandleFunc("DELETE /v1/functions/{name}/instances", s.drain)
	s.mux.HandleFunc("POST /v1/functions/{name}/fork-floor", s.forkFloor)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(p.Metrics().Registry, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, fmt.Errorf("no route for %s %s: %w", r.Method, r.URL.Path, errdefs.ErrNotFound))
	})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in handler", "path", r.URL.Path, "panic", v)
			s.fail(w, r, fmt.Errorf("internal error"))
		}
	}()
	if !(r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead)) && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="catalyzer"`)
		s.fail(w, r, s.unauthorized(r))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// FunctionView is a function as the API shows it.
type FunctionView struct {
	platform.Function
	CodePath string `json:"code_path"`
	// Template is the state of its fork template: "building", "ready",
	// "failed: <why>" (fork boot is then unavailable) or "none".
	Template string `json:"template"`
	// Image is the state of its checkpoint image (cold and warm boot).
	Image string `json:"image"`
}

func (s *Server) view(f platform.Function) FunctionView {
	return FunctionView{Function: f, CodePath: s.p.CodeDir(f), Template: s.p.TemplateStatus(f.Name), Image: s.p.ImageStatus(f.Name)}
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	var req platform.DeployRequest
	if err := decodeBody(w, r, MaxDeployBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	f, created, err := s.p.Deploy(r.PathValue("name"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, s.view(f))
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	fns := s.p.List()
	out := make([]FunctionView, 0, len(fns))
	for _, f := range fns {
		out = append(out, s.view(f))
	}
	writeJSON(w, http.StatusOK, map[string]any{"functions": out})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	f, err := s.p.Get(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.view(f))
}

// InstancesView is the body of GET /v1/functions/{name}/instances.
type InstancesView struct {
	Instances []platform.InstanceInfo `json:"instances"`
	Template  boot.TemplateInfo       `json:"template"`
	Image     boot.ImageInfo          `json:"image"`
}

func (s *Server) instances(w http.ResponseWriter, r *http.Request) {
	insts, tpl, img, err := s.p.Instances(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if insts == nil {
		insts = []platform.InstanceInfo{}
	}
	writeJSON(w, http.StatusOK, InstancesView{Instances: insts, Template: tpl, Image: img})
}

// drain destroys the function's idle instances.
func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	n, err := s.p.Drain(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"drained": n})
}

// FloorView is the body of POST /v1/functions/{name}/fork-floor.
type FloorView struct {
	SamplesUs []int64 `json:"samples_us"`
}

// forkFloor measures the fork floor (?n=, default 20; body = event).
func (s *Server) forkFloor(w http.ResponseWriter, r *http.Request) {
	n := 20
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			s.fail(w, r, fmt.Errorf("n %q is not a number: %w", v, errdefs.ErrInvalid))
			return
		}
	}
	event, err := readBody(w, r, MaxEventBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ds, err := s.p.ForkFloor(r.Context(), r.PathValue("name"), event, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := FloorView{SamplesUs: make([]int64, len(ds))}
	for i, d := range ds {
		v.SamplesUs[i] = d.Microseconds()
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	if err := s.p.Delete(r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	accept := time.Now()
	name := r.PathValue("name")
	mode, err := boot.ParseMode(r.URL.Query().Get("boot"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	event, err := readBody(w, r, MaxEventBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	if r.URL.Query().Get("prefetch") == "false" {
		ctx = boot.WithoutPrefetch(ctx) // a benchmark knob: see catalyzer bench --no-prefetch
	}
	res, err := s.p.Invoke(ctx, name, mode, event)
	h := w.Header()
	if res.Boot != "" && res.InstanceID != "" {
		h.Set(HeaderBoot, string(res.Boot))
		h.Set(HeaderBootUs, strconv.FormatInt(res.BootUs, 10))
		h.Set(HeaderReused, strconv.FormatBool(res.Reused))
		h.Set(HeaderInstance, res.InstanceID)
		if len(res.Phases) > 0 {
			parts := make([]string, len(res.Phases))
			for i, ph := range res.Phases {
				parts[i] = fmt.Sprintf("%s=%d", ph.Name, ph.D.Microseconds())
			}
			h.Set(HeaderPhases, strings.Join(parts, ","))
		}
		setLogHeader(h, HeaderStdout, res.Stdout)
		setLogHeader(h, HeaderStderr, res.Stderr)
		if res.Truncated {
			h.Set(HeaderTruncated, "true")
		}
		if res.LogsTruncated {
			h.Set(HeaderLogsTruncated, "true")
		}
	}
	label := string(res.Boot)
	if res.Reused {
		label = "reuse"
	}
	elapsed := time.Since(accept)
	h.Set(HeaderAcceptUs, strconv.FormatInt(elapsed.Microseconds(), 10))
	if err != nil {
		s.fail(w, r, err)
		s.p.Metrics().ObserveRequest(name, label, time.Since(accept).Seconds())
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(res.Output)
	s.p.Metrics().ObserveRequest(name, label, time.Since(accept).Seconds())
}

// setLogHeader puts the tail of out, base64, in header k.
func setLogHeader(h http.Header, k, out string) {
	if out == "" {
		return
	}
	if max := MaxLogHeader * 3 / 4; len(out) > max {
		out = out[len(out)-max:]
	}
	h.Set(k, base64.StdEncoding.EncodeToString([]byte(out)))
}

// ErrorBody is the shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names an error's type and says what happened.
type ErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Trace   string `json:"trace,omitempty"`
	Stdout  string `json:"stdout,omitempty"`
	Stderr  string `json:"stderr,omitempty"`
}

// errorStatus maps an error to its status code and type by errdefs.Table
// (errdefs.Classify, which the platform's error metric uses too); a
// function's error also carries its trace and output.
func errorStatus(err error) (int, ErrorDetail) {
	k := errdefs.Classify(err)
	d := ErrorDetail{Type: k.Type, Message: err.Error()}
	var fe *agent.FunctionError
	if errors.As(err, &fe) {
		d.Message, d.Trace, d.Stdout, d.Stderr = fe.Message, fe.Trace, fe.Stdout, fe.Stderr
	}
	return k.Status, d
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, d := errorStatus(err)
	lvl := slog.LevelInfo
	switch {
	case d.Type == "ProtocolError":
		lvl = slog.LevelWarn // an instance broke the protocol: the operator wants to see that
	case code >= 500 && code != http.StatusBadGateway && code != http.StatusNotImplemented:
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "request failed", "method", r.Method, "path", r.URL.Path, "status", code, "type", d.Type, "err", err)
	writeJSON(w, code, ErrorBody{Error: d})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// readBody reads at most limit bytes; more is ErrTooLarge.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("request body is larger than the limit of %d bytes: %w", limit, errdefs.ErrTooLarge)
		}
		return nil, fmt.Errorf("read request body: %v: %w", err, errdefs.ErrInvalid)
	}
	return b, nil
}

// decodeBody decodes one JSON object, refusing unknown fields (a typo in
// a field name is an error, not a silent default).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	b, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body is not valid JSON for this endpoint: %v: %w", err, errdefs.ErrInvalid)
	}
	if dec.More() {
		return fmt.Errorf("request body has trailing data after the JSON object: %w", errdefs.ErrInvalid)
	}
	return nil
}
