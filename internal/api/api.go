// Package api is the daemon's HTTP/JSON API. It holds handlers only: the
// work is the platform's, and every error is mapped to a status code by
// errdefs.Table (errorStatus), the table the platform's metrics use too.
//
//	PUT    /v1/functions/{name}             deploy (201 created, 200 replaced)
//	GET    /v1/functions                    list
//	GET    /v1/functions/{name}             show
//	DELETE /v1/functions/{name}             delete (204)
//	POST   /v1/functions/{name}/invoke      invoke: ?boot=scratch|fork|cold|warm|auto
//	GET    /v1/functions/{name}/instances   live instances, template, image
//	DELETE /v1/functions/{name}/instances   destroy the idle instances
//	POST   /v1/functions/{name}/fork-floor  the fork floor: ?n= samples
//	GET    /metrics                         Prometheus
//	GET    /healthz                         liveness (the only route without a token)
//
// Every request but GET /healthz must carry "Authorization: Bearer
// <token>", the daemon's token (LoadOrCreateToken); others are answered
// 401. Errors are always {"error": {"type": ..., "message": ...}}. The
// bodies, headers and limits are package wire's: the handlers convert
// the platform's values to them.
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
	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/platform"
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
		writeJSON(w, http.StatusOK, wire.Health{Status: "ok"})
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

func (s *Server) view(f platform.Function) wire.Function {
	return functionView(f, s.p.CodeDir(f), s.p.TemplateStatus(f.Name), s.p.ImageStatus(f.Name))
}

func functionView(f platform.Function, codePath, template, image string) wire.Function {
	return wire.Function{
		Name: f.Name, Runtime: f.Runtime, Handler: f.Handler, CodeDigest: f.CodeDigest,
		MemoryMB: f.MemoryMB, TimeoutMs: f.TimeoutMs, Env: f.Env,
		MaxInstances: f.MaxInstances, Network: f.Network, UIDSlot: f.UIDSlot,
		CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt,
		CodePath: codePath, Template: template, Image: image,
	}
}

// deployRequest is the platform's view of a deploy's body.
func deployRequest(r wire.DeployRequest) platform.DeployRequest {
	return platform.DeployRequest{
		Runtime: r.Runtime, Handler: r.Handler, CodePath: r.CodePath, CodeTgzB64: r.CodeTgzB64,
		MemoryMB: r.MemoryMB, TimeoutMs: r.TimeoutMs, Env: r.Env,
		MaxInstances: r.MaxInstances, Network: r.Network,
	}
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	var req wire.DeployRequest
	if err := decodeBody(w, r, wire.MaxDeployBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	f, created, err := s.p.Deploy(r.PathValue("name"), deployRequest(req))
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
	out := wire.FunctionList{Functions: make([]wire.Function, 0, len(fns))}
	for _, f := range fns {
		out.Functions = append(out.Functions, s.view(f))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	f, err := s.p.Get(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.view(f))
}

func (s *Server) instances(w http.ResponseWriter, r *http.Request) {
	insts, tpl, img, err := s.p.Instances(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := wire.Instances{Instances: make([]wire.Instance, 0, len(insts)), Template: templateView(tpl), Image: imageView(img)}
	for _, in := range insts {
		v.Instances = append(v.Instances, instanceView(in))
	}
	writeJSON(w, http.StatusOK, v)
}

func instanceView(in platform.InstanceInfo) wire.Instance {
	return wire.Instance{ID: in.ID, Boot: in.Boot, State: in.State, Pid: in.Pid, PSSKB: in.PSSKB}
}

func templateView(t boot.TemplateInfo) wire.Template {
	v := wire.Template{Status: t.Status, Pid: t.Pid, KilledAtFreeze: t.KilledAtFreeze, PSSKB: t.PSSKB}
	if p := t.Pool; p != nil {
		v.Pool = &wire.EnvPool{Ready: p.Ready, Built: p.Built, Taken: p.Taken, OnDemand: p.OnDemand, Failures: p.Failures, MeanBuildUs: p.MeanBuild.Microseconds()}
	}
	return v
}

func imageView(i boot.ImageInfo) wire.Image {
	return wire.Image{Status: i.Status, Dir: i.Dir, PagesBytes: i.PagesBytes, PagesApparent: i.PagesApparent, PlanEntries: i.PlanEntries, WorkingSet: i.WorkingSet}
}

// drain destroys the function's idle instances.
func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	n, err := s.p.Drain(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Drained{Drained: n})
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
	event, err := readBody(w, r, wire.MaxEventBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ds, err := s.p.ForkFloor(r.Context(), r.PathValue("name"), event, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := wire.Floor{SamplesUs: make([]int64, len(ds))}
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
	event, err := readBody(w, r, wire.MaxEventBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var opts []platform.InvokeOption
	if r.URL.Query().Get("prefetch") == "false" {
		opts = append(opts, platform.NoPrefetch()) // a benchmark knob: see catalyzer bench --no-prefetch
	}
	res, err := s.p.Invoke(r.Context(), name, mode, event, opts...)
	h := w.Header()
	if res.Boot != "" && res.InstanceID != "" {
		h.Set(wire.HeaderBoot, string(res.Boot))
		h.Set(wire.HeaderBootUs, strconv.FormatInt(res.BootUs, 10))
		h.Set(wire.HeaderReused, strconv.FormatBool(res.Reused))
		if res.HandlerUs > 0 {
			h.Set(wire.HeaderHandlerUs, strconv.FormatInt(res.HandlerUs, 10))
		}
		h.Set(wire.HeaderInstance, res.InstanceID)
		if len(res.Phases) > 0 {
			parts := make([]string, len(res.Phases))
			for i, ph := range res.Phases {
				parts[i] = fmt.Sprintf("%s=%d", ph.Name, ph.D.Microseconds())
			}
			h.Set(wire.HeaderPhases, strings.Join(parts, ","))
		}
		setLogHeader(h, wire.HeaderStdout, res.Stdout)
		setLogHeader(h, wire.HeaderStderr, res.Stderr)
		if res.Truncated {
			h.Set(wire.HeaderTruncated, "true")
		}
		if res.LogsTruncated {
			h.Set(wire.HeaderLogsTruncated, "true")
		}
	}
	label := string(res.Boot)
	if res.Reused {
		label = "reuse"
	}
	elapsed := time.Since(accept)
	h.Set(wire.HeaderAcceptUs, strconv.FormatInt(elapsed.Microseconds(), 10))
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
	if max := wire.MaxLogHeader * 3 / 4; len(out) > max {
		out = out[len(out)-max:]
	}
	h.Set(k, base64.StdEncoding.EncodeToString([]byte(out)))
}

// errorStatus maps an error to its status code and type by errdefs.Table
// (errdefs.Classify, which the platform's error metric uses too); a
// function's error also carries its trace and output.
func errorStatus(err error) (int, wire.ErrorDetail) {
	k := errdefs.Classify(err)
	d := wire.ErrorDetail{Type: k.Type, Message: err.Error()}
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
	writeJSON(w, code, wire.ErrorBody{Error: d})
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
