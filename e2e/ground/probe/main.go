// mcpk-probe: an MCP client (the official Go SDK) for the test ground's
// Pods. It resolves the server's Service name with the Pod's own resolver
// (CoreDNS), connects over Streamable HTTP with the Pod's projected
// ServiceAccount token, lists the tools it may call and calls one, and
// prints what it saw as one JSON line. Exit status 0 only when the call
// answered without a tool error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

type report struct {
	URL       string          `json:"url"`
	Addresses []string        `json:"addresses"`
	Tools     []string        `json:"tools"`
	Tool      string          `json:"tool"`
	IsError   bool            `json:"isError"`
	Result    json.RawMessage `json:"result"`
	Error     string          `json:"error,omitempty"`
	// Connection attempts (more than one when the network refused at first).
	Attempts int `json:"attempts"`
}

func main() {
	endpoint := flag.String("url", "", "the server's MCP endpoint")
	tokenFile := flag.String("token-file", "/var/run/secrets/mcp/token", "bearer token file")
	tool := flag.String("tool", "list_topics", "the tool to call")
	timeout := flag.Duration("timeout", 30*time.Second, "for the whole exchange")
	flag.Parse()
	rep := report{URL: *endpoint, Tool: *tool}
	err := run(&rep, *endpoint, *tokenFile, *tool, *timeout)
	if err != nil {
		rep.Error = err.Error()
	}
	line, _ := json.Marshal(rep)
	fmt.Println(string(line))
	if err != nil || rep.IsError {
		os.Exit(1)
	}
}

func run(rep *report, endpoint, tokenFile, tool string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("bad -url %q", endpoint)
	}
	// The name's own lookup, reported, so that the caller sees DNS worked.
	addrs, err := net.DefaultResolver.LookupHost(ctx, u.Hostname())
	if err != nil {
		return fmt.Errorf("resolving %s: %w", u.Hostname(), err)
	}
	rep.Addresses = addrs
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("reading the token: %w", err)
	}
	httpClient := &http.Client{Transport: bearer{strings.TrimSpace(string(token)), http.DefaultTransport}}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpk-probe", Version: "1"}, nil)
	// A refused or unanswered connection is tried again until the deadline:
	// a node's NetworkPolicy engine lets a new Pod's address in a moment
	// after the Pod starts, as kube-router does. An HTTP answer is final.
	var session *mcp.ClientSession
	var refused error
	for {
		rep.Attempts++
		session, err = client.Connect(ctx, &mcp.StreamableClientTransport{
			Endpoint: endpoint, HTTPClient: httpClient, DisableStandaloneSSE: true, MaxRetries: -1,
		}, nil)
		var netErr net.Error
		if err == nil || !errors.As(err, &netErr) || ctx.Err() != nil {
			break
		}
		refused = err
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil && refused != nil && ctx.Err() != nil {
		// What the network said, rather than the deadline it led to.
		return fmt.Errorf("connecting: %w (until the deadline)", refused)
	}
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	for _, t := range tools.Tools {
		rep.Tools = append(rep.Tools, t.Name)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
	if err != nil {
		return fmt.Errorf("tools/call %s: %w", tool, err)
	}
	rep.IsError = res.IsError
	rep.Result, _ = json.Marshal(res)
	return nil
}
