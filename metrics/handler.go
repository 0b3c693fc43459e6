package metrics

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the node's operational HTTP handler:
//
//	/metrics  the metrics of reg in the Prometheus exposition format
//	/healthz  200 "ok" while the process serves HTTP
//	/readyz   200 "ready" if ready() reports true, else 503 "not ready";
//	          a nil ready counts as always ready
//
// plus each entry of debug, keyed by its path or net/http.ServeMux pattern
// (for example "/debug/routing"). Any other path is 404.
//
// Handler panics if a debug entry is nil or its pattern is invalid or
// conflicts with another pattern, as net/http.ServeMux.Handle does.
func Handler(reg *prometheus.Registry, ready func() bool, debug map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			plain(w, http.StatusServiceUnavailable, "not ready\n")
			return
		}
		plain(w, http.StatusOK, "ready\n")
	})
	for pattern, h := range debug {
		mux.Handle(pattern, h)
	}
	return mux
}

// plain writes a short uncacheable text/plain response.
func plain(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body) // the client may have gone; nothing to do
}
