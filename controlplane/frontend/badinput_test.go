package frontend

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBadInput(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, -1, func(c *Config) { c.MaxUploadBytes = 4 << 20 })
	pcapData, err := os.ReadFile(captures("softflowd-ipfix.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	ipfixData, err := os.ReadFile(captures("softflowd-ipfix-tcp.ipfix"))
	if err != nil {
		t.Fatal(err)
	}
	upload := func(token string, body io.Reader) (int, []byte) {
		code, _, b := call(t, "POST", ts.url+"/api/v1/files?name=x", token, body)
		return code, b
	}
	wantErr := func(code, gotCode int, body []byte, errCode string) {
		t.Helper()
		var e apiError
		want(t, code, gotCode, body, &e)
		if e.Error != errCode {
			t.Fatalf("error %q, want %q: %s", e.Error, errCode, body)
		}
	}

	// Tokens.
	code, b := upload("", bytes.NewReader(pcapData))
	wantErr(401, code, b, "unauthorized")
	code, b = upload("not-a-known-token-at-all", bytes.NewReader(pcapData))
	wantErr(401, code, b, "unauthorized")
	code, _, b = call(t, "GET", ts.url+"/api/v1/jobs", "", nil, "Authorization", "Basic "+tokenA)
	wantErr(401, code, b, "unauthorized")

	// Wrong type.
	code, b = upload(tokenA, strings.NewReader("this is a text file, not a capture\n"))
	wantErr(415, code, b, "unsupported_type")
	code, b = upload(tokenA, strings.NewReader(""))
	wantErr(415, code, b, "unsupported_type")

	// Truncated files: cut inside the last record or message.
	code, b = upload(tokenA, bytes.NewReader(pcapData[:len(pcapData)-10]))
	wantErr(400, code, b, "bad_file")
	code, b = upload(tokenA, bytes.NewReader(ipfixData[:len(ipfixData)-3]))
	wantErr(400, code, b, "bad_file")
	// Corrupt framing: the second IPFIX message's length below the header's.
	bad := bytes.Clone(ipfixData)
	second := int(bad[2])<<8 | int(bad[3])
	bad[second+2], bad[second+3] = 0, 4
	code, b = upload(tokenA, bytes.NewReader(bad))
	wantErr(400, code, b, "bad_file")

	// Oversized: by Content-Length, and chunked without one.
	big := bytes.Repeat(ipfixData, (5<<20)/len(ipfixData)+1)
	code, b = rawPost(t, ts, "/api/v1/files", big, false)
	wantErr(413, code, b, "too_large")
	code, b = rawPost(t, ts, "/api/v1/files", big, true)
	wantErr(413, code, b, "too_large")
	code, b = rawPost(t, ts, "/api/v1/jobs", make([]byte, 2<<20), false)
	wantErr(413, code, b, "too_large")
	code, b = rawPost(t, ts, "/api/v1/jobs", make([]byte, 2<<20), true)
	wantErr(413, code, b, "too_large")

	// A body that ends before its Content-Length (the client goes away).
	code, b = truncatedPost(t, ts, 3<<20, 2<<20)
	wantErr(400, code, b, "bad_upload")
	// Nothing of the refused uploads stayed.
	entries, _ := os.ReadDir(ts.cfg.DataDir + "/files/tenant-a")
	waitFor(t, "partial uploads removed", func() bool {
		entries, _ = os.ReadDir(ts.cfg.DataDir + "/files/tenant-a")
		return len(entries) == 0
	})
	code, _, b = call(t, "GET", ts.url+"/api/v1/files", tokenA, nil)
	if want(t, 200, code, b, nil); strings.TrimSpace(string(b)) != `{"files":[]}` {
		t.Fatalf("files after refused uploads: %s", b)
	}

	// Jobs.
	file := ts.upload(t, tokenA, captures("softflowd-ipfix.pcap"))
	code, _, b = ts.postJobRaw(t, tokenA, "no-such-type", []string{file}, "")
	wantErr(400, code, b, "unknown_job_type")
	code, _, b = ts.postJobRaw(t, tokenA, "echo", []string{file}, `{"wait_ms":-1}`)
	wantErr(400, code, b, "bad_params")
	code, _, b = ts.postJobRaw(t, tokenA, "echo", []string{file}, `{"nonsense":1}`)
	wantErr(400, code, b, "bad_params")
	code, _, b = call(t, "POST", ts.url+"/api/v1/jobs", tokenA, strings.NewReader(`{"type":"echo"`))
	wantErr(400, code, b, "bad_request")
	code, _, b = call(t, "POST", ts.url+"/api/v1/jobs", tokenA, strings.NewReader(`{"type":"echo","extra":1}`))
	wantErr(400, code, b, "bad_request")
	code, _, b = ts.postJobRaw(t, tokenA, "echo", []string{"0123456789abcdef0123456789abcdef"}, "")
	wantErr(404, code, b, "not_found")
	code, _, b = call(t, "GET", ts.url+"/api/v1/jobs/not-an-id", tokenA, nil)
	wantErr(404, code, b, "not_found")
	code, _, b = call(t, "GET", ts.url+"/api/v1/jobs?limit=0", tokenA, nil)
	wantErr(400, code, b, "bad_request")
	code, _, b = call(t, "GET", ts.url+"/api/v1/jobs?offset=x", tokenA, nil)
	wantErr(400, code, b, "bad_request")
	// Nothing was queued by the refused posts.
	code, _, b = call(t, "GET", ts.url+"/api/v1/jobs", tokenA, nil)
	if want(t, 200, code, b, nil); !strings.Contains(string(b), `"total":0`) {
		t.Fatalf("jobs after refused posts: %s", b)
	}
}

// rawPost sends body (chunked, or with its Content-Length) while it reads
// the answer: the server may answer before it has read everything.
func rawPost(t *testing.T, ts *testServer, path string, body []byte, chunked bool) (int, []byte) {
	c, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hdr := "POST " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tokenA + "\r\n"
	if chunked {
		hdr += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		hdr += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	}
	go func() {
		w := bufio.NewWriter(c)
		w.WriteString(hdr)
		for len(body) > 0 && chunked {
			n := min(len(body), 64<<10)
			w.WriteString(strconv.FormatInt(int64(n), 16) + "\r\n")
			w.Write(body[:n])
			w.WriteString("\r\n")
			body = body[n:]
		}
		if chunked {
			w.WriteString("0\r\n\r\n")
		} else {
			w.Write(body)
		}
		w.Flush() // errors: the server answered and closed first
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// truncatedPost sends an upload that announces size bytes and sends sent,
// then half-closes; it returns the status (0 when the server just closed).
func truncatedPost(t *testing.T, ts *testServer, size, sent int) (int, []byte) {
	c, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data, _ := os.ReadFile(captures("softflowd-ipfix-tcp.ipfix"))
	body := bytes.Repeat(data, sent/len(data)+1)[:sent]
	hdr := "POST /api/v1/files?name=cut HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tokenA +
		"\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	if _, err := c.Write(append([]byte(hdr), body...)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
