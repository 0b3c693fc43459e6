package httpguard

import (
	"mime"
	"slices"
	"testing"
)

// FuzzGuardCheck: whatever Host, Origin, Fetch Metadata and Content-Type a
// request carries, Check does not panic, refuses with a documented status
// and reason, and what it lets through keeps the rules: a host it serves,
// no write that is not JSON, no cross-site request from an origin that is
// not allowed (but a top-level navigation that reads). A CrossOrigin route
// is refused exactly when the Host is.
func FuzzGuardCheck(f *testing.F) {
	g, err := New(Policy{AllowedHosts: []string{"dht.example.org"}, AllowedOrigins: []string{"https://app.example.org"}})
	if err != nil {
		f.Fatal(err)
	}
	const local = "127.0.0.1:8080"
	for _, s := range [][7]string{
		{"GET", local, "", "", "", "", ""},
		{"POST", "localhost:8080", "http://localhost:8080", "same-origin", "cors", "empty", "application/json"},
		{"POST", local, "http://127.0.0.2:8000", "cross-site", "no-cors", "empty", "text/plain"},
		{"POST", local, "https://app.example.org", "cross-site", "cors", "empty", "application/json; charset=utf-8"},
		{"GET", "evil.example:8080", "", "", "", "", ""},
		{"GET", "[::ffff:127.0.0.1]:8080", "", "", "", "", ""},
		{"GET", local, "", "cross-site", "navigate", "document", ""},
		{"POST", local, "null", "cross-site", "navigate", "iframe", "application/x-www-form-urlencoded"},
		{"PUT", "DHT.EXAMPLE.ORG.", "", "same-site", "cors", "empty", "application/json"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6])
	}
	f.Fuzz(func(t *testing.T, method, host, origin, site, mode, dest, ctype string) {
		if !slices.Contains([]string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"}, method) {
			return
		}
		r := request(method, host, local, map[string]string{
			"Origin": origin, "Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest, "Content-Type": ctype,
		})
		same, cross := g.Check(r, SameOrigin), g.Check(r, CrossOrigin)
		for _, ref := range []*Refusal{same, cross} {
			if ref == nil {
				continue
			}
			if !slices.Contains(Reasons, ref.Reason) || (ref.Status != 421 && ref.Status != 403 && ref.Status != 415) || ref.Msg == "" {
				t.Fatalf("refusal %+v: undocumented", ref)
			}
		}
		hostRefused := same != nil && same.Reason == ReasonHost
		if (cross != nil) != hostRefused {
			t.Fatalf("Host %q: SameOrigin %v, CrossOrigin %v: want the cross-origin route refused exactly when the host is", host, same, cross)
		}
		if same != nil {
			return
		}
		h, _, err := splitHost(r.Header.Get("Host"))
		if r.Host != "" {
			h, _, err = splitHost(r.Host)
		}
		if err != nil || (h != "127.0.0.1" && h != "localhost" && h != "dht.example.org" && h != "::ffff:127.0.0.1") {
			t.Fatalf("Host %q served", host)
		}
		if !safeMethod(r.Method) {
			if mt, _, err := mime.ParseMediaType(ctype); err != nil || mt != "application/json" {
				t.Fatalf("%s with Content-Type %q served", method, ctype)
			}
		}
		if (site == "same-site" || site == "cross-site") && !g.listedOrigin(origin) &&
			!(safeMethod(r.Method) && mode == "navigate" && dest == "document") {
			t.Fatalf("%s request from origin %q (%s, %s) served", site, origin, mode, dest)
		}
	})
}
