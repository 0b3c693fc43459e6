package gateway

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// readmeHost is the gateway address the README's examples use.
const readmeHost = "http://127.0.0.1:8080"

type curlExample struct {
	line string
	want int
}

// readmeCurls returns the curl lines of the README's section (its "## "
// title), each with the status its comment promises ("→ 200"). A line is
// a curl command, or a pipeline that ends in one ("… | curl …").
func readmeCurls(t *testing.T, section string) []curlExample {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+section+"\n")
	if i < 0 {
		t.Fatalf("README has no \"## %s\" section", section)
	}
	s = s[i+1:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	reWant := regexp.MustCompile(`→ (\d{3})\b`)
	var out []curlExample
	want := 0
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "# "):
			want = 0
			if m := reWant.FindStringSubmatch(l); m != nil {
				want, _ = strconv.Atoi(m[1])
			}
		case strings.HasPrefix(l, "curl ") || strings.Contains(l, "| curl "):
			if want == 0 {
				t.Fatalf("README curl line without a \"→ NNN\" comment above it: %s", l)
			}
			out = append(out, curlExample{l, want})
			want = 0
		}
	}
	return out
}

// TestGatewayREADMECurl runs every curl example of the README against a
// gateway on a loopback network and checks the promised status; every
// /v1 route and the page must have an example.
func TestGatewayREADMECurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	examples := readmeCurls(t, "HTTP gateway")
	nodes := startNet(t, 4)
	_, ts := serve(t, nodes[0], nil)
	covered := runCurls(t, curl, ts.URL, examples, routes)
	for _, rt := range routes {
		if rt.pattern == "/v1/" || strings.HasPrefix(rt.pattern, "GET /ui/") {
			continue
		}
		if !covered[rt.pattern] {
			t.Errorf("no README curl example for %s", rt.pattern)
		}
	}
	t.Logf("%d README curl examples run", len(examples))
}

// runCurls runs each example against the gateway at url (in a fresh
// directory: an example may write a file), checks its status and returns
// the patterns of rts the examples cover.
func runCurls(t *testing.T, curl, url string, examples []curlExample, rts []route) map[string]bool {
	t.Helper()
	covered := map[string]bool{}
	reMethod := regexp.MustCompile(`-X (\w+)`)
	dir := t.TempDir()
	for _, ex := range examples {
		if !strings.Contains(ex.line, readmeHost) {
			t.Fatalf("example does not use %s: %s", readmeHost, ex.line)
		}
		line := strings.ReplaceAll(ex.line, readmeHost, url)
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", line+` -o /dev/null -w '%{http_code}'`)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH=/usr/bin:/bin:"+strings.TrimSuffix(curl, "/curl"))
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", ex.line, err)
		}
		code, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		if code != ex.want {
			t.Errorf("%s\n  status %d, README says %d", ex.line, code, ex.want)
		}
		method := "GET"
		if m := reMethod.FindStringSubmatch(ex.line); m != nil {
			method = m[1]
		}
		for _, rt := range rts {
			if routeMatches(rt.pattern, method, ex.line) {
				covered[rt.pattern] = true
			}
		}
	}
	return covered
}

// TestPkarrREADMECurl runs the curl examples of the README's "Pkarr"
// section against a relay on a loopback network; each relay route must
// have one.
func TestPkarrREADMECurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	examples := readmeCurls(t, "Pkarr")
	nodes := startNet(t, 4)
	_, ts := serve(t, nodes[0], nil)
	rts := pkarrRoutes
	covered := runCurls(t, curl, ts.URL, examples, rts)
	for _, rt := range rts {
		if !strings.Contains(rt.pattern, " ") {
			continue // the catch-all
		}
		if !covered[rt.pattern] {
			t.Errorf("no README curl example for %s", rt.pattern)
		}
	}
	t.Logf("%d README curl examples run", len(examples))
}

// routeMatches reports whether a curl line's URL matches a route pattern.
func routeMatches(pattern, method, line string) bool {
	m, p, ok := strings.Cut(pattern, " ")
	if !ok || m != method {
		return false
	}
	p = strings.TrimSuffix(p, "{$}")
	re := regexp.QuoteMeta(p)
	re = regexp.MustCompile(`\\\{[a-z]+\\\}`).ReplaceAllString(re, `[^/?'"\s]+`)
	return regexp.MustCompile(regexp.QuoteMeta(readmeHost) + re + `(?:[?'"\s]|$)`).MatchString(line)
}

func TestGatewayRouteMatches(t *testing.T) {
	tests := []struct {
		pattern, method, line string
		want                  bool
	}{
		{"GET /v1/ping", "GET", "curl -s http://127.0.0.1:8080/v1/ping", true},
		{"GET /v1/ping", "GET", "curl -s http://127.0.0.1:8080/v1/pingx", false},
		{"GET /v1/ping", "POST", "curl -s -X POST http://127.0.0.1:8080/v1/ping", false},
		{"GET /v1/immutable/{target}", "GET", "curl -s http://127.0.0.1:8080/v1/immutable/abc", true},
		{"POST /v1/immutable", "POST", "curl -s -X POST http://127.0.0.1:8080/v1/immutable/abc", false},
		{"GET /v1/mutable/{pubkey}", "GET", "curl -s 'http://127.0.0.1:8080/v1/mutable/ab?salt=x'", true},
		{"GET /{$}", "GET", "curl -s http://127.0.0.1:8080/", true},
		{"GET /{$}", "GET", "curl -s http://127.0.0.1:8080/v1/ping", false},
	}
	for _, tt := range tests {
		if got := routeMatches(tt.pattern, tt.method, tt.line); got != tt.want {
			t.Errorf("routeMatches(%q, %q, %q) = %v, want %v", tt.pattern, tt.method, tt.line, got, tt.want)
		}
	}
}
