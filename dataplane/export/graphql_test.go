package export

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// gqlServer is a GraphQL endpoint for the tests: gqlparser (the parser and
// validator gqlgen uses) parses each document and validates it and its
// variables against the schema in testdata/graphql; the inputs of valid
// mutations are stored. Invalid requests get GraphQL errors, as a real
// server answers them.
type gqlServer struct {
	schema    *ast.Schema
	token     string
	mu        sync.Mutex
	inputs    []map[string]any
	requests  int
	refused   []string
	failFirst int           // answer 503 to this many requests first
	hold      chan struct{} // when set, requests wait for it to close
}

func newGQLServer(t testing.TB, files ...string) (*gqlServer, *httptest.Server) {
	t.Helper()
	var srcs []*ast.Source
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata/graphql", f))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, &ast.Source{Name: f, Input: string(b)})
	}
	schema, err := gqlparser.LoadSchema(srcs...)
	if err != nil {
		t.Fatal(err)
	}
	s := &gqlServer{schema: schema}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func (s *gqlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.hold != nil {
		<-s.hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.requests <= s.failFirst {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	refuse := func(msg string) {
		s.refused = append(s.refused, msg)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"message": msg}}})
	}
	doc, errs := gqlparser.LoadQuery(s.schema, req.Query)
	if len(errs) > 0 {
		refuse(errs.Error())
		return
	}
	op := doc.Operations[0]
	vars, err := validator.VariableValues(s.schema, op, req.Variables)
	if err != nil {
		refuse(err.Error())
		return
	}
	data := map[string]any{}
	for _, sel := range op.SelectionSet {
		f := sel.(*ast.Field)
		v, err := f.Arguments.ForName("input").Value.Value(vars)
		if err != nil {
			refuse(err.Error())
			return
		}
		switch in := v.(type) {
		case map[string]any:
			s.inputs = append(s.inputs, in)
			data[f.Alias] = map[string]any{"id": strconv.Itoa(len(s.inputs))}
		case []any:
			var ids []any
			for _, x := range in {
				s.inputs = append(s.inputs, x.(map[string]any))
				ids = append(ids, map[string]any{"id": strconv.Itoa(len(s.inputs))})
			}
			data[f.Alias] = ids
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func (s *gqlServer) stored() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.inputs...)
}

// gqlRef is the reference for the GraphQL mapping: the IpfixRecordInput a
// record's `sluice decode` JSON gives by the table GraphQLFields, by element
// names, as the variables arrive at the server (numbers as json.Number,
// times normalised by normInstants).
func gqlRef(t testing.TB, fr fedRecord) map[string]any {
	t.Helper()
	obj := orderedJSON(t, []byte(fr.json))
	want := map[string]any{}
	groups := map[string]map[string]any{}
	exporter := netip.MustParseAddrPort(obj[0].val.(string)).Addr()
	for _, p := range obj[5:] { // after exporter, version, domain, template, export time
		name := p.key
		if base := repeatSuffix.ReplaceAllString(name, ""); base != name && ipfix.LookupName(base) != nil {
			name = base
		}
		for _, f := range GraphQLFields {
			if f.Element != name {
				continue
			}
			dst := want
			if f.Group != "" {
				if groups[f.Group] == nil {
					groups[f.Group] = map[string]any{}
				}
				dst = groups[f.Group]
			}
			if _, set := dst[f.Input]; set {
				break
			}
			v := p.val
			if s, ok := v.(string); ok && strings.HasSuffix(name, "SysUpTime") { // back to the exporter's uptime
				ts, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					t.Fatal(err)
				}
				v = json.Number(strconv.FormatUint(uint64(fr.uptime-uint32(fr.exportMs-ts.UnixMilli())), 10))
			}
			if o, ok := v.(map[string]any); ok { // an MPLS label stack entry, sent whole
				l, _ := strconv.ParseUint(string(o["label"].(json.Number)), 10, 32)
				e, _ := strconv.ParseUint(string(o["exp"].(json.Number)), 10, 8)
				entry := l<<4 | e<<1
				if o["bottom_of_stack"] == true {
					entry |= 1
				}
				v = json.Number(strconv.FormatUint(entry, 10))
			}
			switch f.Kind {
			case "Int", "Long":
				if s, ok := v.(string); ok { // octets (MPLS label stack entries)
					b, _ := hex.DecodeString(s)
					var u uint64
					for _, x := range b {
						u = u<<8 | uint64(x)
					}
					v = json.Number(strconv.FormatUint(u, 10))
				}
				if n, _ := strconv.ParseUint(string(v.(json.Number)), 10, 64); f.Kind == "Int" && n > 1<<31-1 {
					continue
				}
			case "String":
				if n, ok := v.(json.Number); ok {
					v = string(n)
				}
			}
			dst[f.Input] = v
			break
		}
	}
	if _, ok := want["observationDomainId"]; !ok {
		want["observationDomainId"] = obj[2].val
	}
	if exporter.Is4() {
		want["exporterIPv4Address"] = exporter.String()
	} else {
		want["exporterIPv6Address"] = exporter.String()
	}
	for g, m := range groups {
		want[g] = m
	}
	normInstants(t, want)
	return want
}

// normInstants rewrites Instant inputs as Unix nanoseconds, so two RFC 3339
// forms of one time compare equal.
func normInstants(t testing.TB, in map[string]any) {
	for k, v := range in {
		switch x := v.(type) {
		case map[string]any:
			normInstants(t, x)
		case string:
			if strings.HasSuffix(k, "Milliseconds") && strings.Contains(k, "flow") && strings.Contains(x, "T") {
				ts, err := time.Parse(time.RFC3339Nano, x)
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				in[k] = ts.UnixNano()
			}
		}
	}
}

func openGraphQL(t testing.TB, spec string) *GraphQL {
	t.Helper()
	o, err := Parse(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := o.(*GraphQL)
	t.Cleanup(func() { g.Close() })
	return g
}

func TestGraphQLDelivery(t *testing.T) {
	for _, tc := range []struct {
		name, opts string
		files      []string // nil: every capture feedCaptures knows
	}{
		{"aliases", "batch=7", nil},
		{"list", "batch=50&list_mutation=ingestIpfixRecords", []string{"softflowd-ipfix-biflow.pcap", "fprobe-v5.pcap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, hs := newGQLServer(t, "ipjfixsvc.graphqls", "list-mutation.graphqls")
			srv.token = "tok"
			tok := filepath.Join(t.TempDir(), "token")
			os.WriteFile(tok, []byte("tok\n"), 0o600)
			g := openGraphQL(t, "graphql+"+hs.URL+"/graphql?"+tc.opts+"&token_file="+tok)
			fed := feedCaptures(t, g, false, tc.files...)
			g.Flush()
			waitFor(t, "every record stored", 30*time.Second, func() bool { return g.Stats().Sent+g.Stats().Dropped == uint64(len(fed)) })
			if s := g.Stats(); s.Dropped != 0 || s.Errors != 0 {
				t.Fatalf("stats %+v, refused %v", s, srv.refused)
			}
			got := srv.stored()
			if len(got) != len(fed) {
				t.Fatalf("stored %d, fed %d", len(got), len(fed))
			}
			biflow := 0
			for i, f := range fed {
				want := gqlRef(t, f)
				normInstants(t, got[i])
				if !reflect.DeepEqual(got[i], want) {
					gj, _ := json.Marshal(got[i])
					wj, _ := json.Marshal(want)
					t.Fatalf("record %d: %s\n got %s\nwant %s", i, f.json, gj, wj)
				}
				if _, ok := got[i]["bidirectionalFlowInfo"]; ok {
					biflow++
				}
			}
			t.Logf("%d records (%d with biflow inputs) in %d requests, %d element values unmapped", len(got), biflow, srv.requests, g.Unmapped())
		})
	}
}

// TestGraphQLLists sends a record with a basicList, a subTemplateList and
// a subTemplateMultiList and checks the list inputs.
func TestGraphQLLists(t *testing.T) {
	t.Parallel()
	srv, hs := newGQLServer(t, "ipjfixsvc.graphqls")
	g := openGraphQL(t, "graphql+"+hs.URL+"/graphql?batch=1")
	w := &ipfix.MessageWriter{Version: ipfix.VersionIPFIX, DomainID: 3}
	b := w.Begin(nil, 1700000000)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 300, []ipfix.FieldSpec{{ID: 7, Length: 2}, {ID: 11, Length: 2}})
	b = ipfix.AppendTemplateRecord(b, 301, []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 291, Length: ipfix.VarLen}, {ID: 292, Length: ipfix.VarLen}, {ID: 293, Length: ipfix.VarLen}})
	w.AddTemplates(2)
	b = w.EndSet(b)
	b = w.BeginSet(b, 301)
	b = append(b, 192, 0, 2, 7)
	var v []byte
	v = ipfix.AppendBasicListHeader(v, ipfix.ListAllOf, ipfix.FieldSpec{ID: 11, Length: 2})
	v = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(v, 80), 443)
	b = ipfix.AppendVarlen(b, v)
	sub := ipfix.AppendSubTemplateListHeader(nil, ipfix.ListOrdered, 300)
	sub = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(sub, 1234), 53)
	b = ipfix.AppendVarlen(b, sub)
	multi := []byte{ipfix.ListAllOf}
	multi = binary.BigEndian.AppendUint16(multi, 300)
	multi = binary.BigEndian.AppendUint16(multi, 8)
	multi = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(multi, 1), 2)
	b = ipfix.AppendVarlen(b, multi)
	w.AddRecords(1)
	b = w.EndSet(b)
	b, err := w.Finish(b)
	if err != nil {
		t.Fatal(err)
	}
	d := decode.New()
	if _, err := d.Decode(netip.MustParseAddrPort("[2001:db8::5]:4739"), b, func(r *decode.Record) {
		g.Record(&jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg, Resolve: r.Resolver}, r.Rec)
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the record stored", 10*time.Second, func() bool { return len(srv.stored()) == 1 })
	got, _ := json.Marshal(srv.stored()[0])
	for _, want := range []string{
		`"basicLists":[{"dataType":"unsigned16","informationElementId":11,"informationElementName":"destinationTransportPort","semantic":"allOf","values":["80","443"]}]`,
		`"subTemplateLists":[{"entries":[{"destinationTransportPort":53,"sourceTransportPort":1234,"template_id":300}],"semantic":"ordered","templateId":300}]`,
		`"subTemplateMultiLists":[{"semantic":"allOf","subTemplateLists":[{"entries":[{"destinationTransportPort":2,"sourceTransportPort":1,"template_id":300}],"semantic":"undefined","templateId":300}]}]`,
		`"exporterIPv6Address":"2001:db8::5"`, `"observationDomainId":3`, `"sourceIPv4Address":"192.0.2.7"`,
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
}

// TestGraphQLSchemaInvalid: a request the schema refuses fails at the
// server (here a list mutation the published schema lacks): the records are
// dropped and counted, nothing is stored, and it is not retried.
func TestGraphQLSchemaInvalid(t *testing.T) {
	t.Parallel()
	srv, hs := newGQLServer(t, "ipjfixsvc.graphqls")
	g := openGraphQL(t, "graphql+"+hs.URL+"/graphql?batch=10&list_mutation=ingestIpfixRecords")
	fed := feed(t, g, genIPFIX(false, 3, 10))
	g.Flush()
	waitFor(t, "records refused", 10*time.Second, func() bool { return g.Stats().Dropped == uint64(len(fed)) })
	if s := g.Stats(); s.Sent != 0 || s.Errors == 0 || g.Reconnects() != 0 {
		t.Fatalf("stats %+v, retries %d", s, g.Reconnects())
	}
	if len(srv.stored()) != 0 || len(srv.refused) == 0 || !strings.Contains(srv.refused[0], "ingestIpfixRecords") {
		t.Fatalf("stored %d, refused %q", len(srv.stored()), srv.refused)
	}
}

// TestGraphQLRetryAndOverflow: a server answering 503 is retried with
// backoff; while it is stuck the queue fills and the overflow is dropped
// and counted; everything else arrives.
func TestGraphQLRetryAndOverflow(t *testing.T) {
	t.Parallel()
	srv, hs := newGQLServer(t, "ipjfixsvc.graphqls")
	srv.failFirst = 2
	g := openGraphQL(t, "graphql+"+hs.URL+"/graphql?batch=10&queue=30")
	fed := feed(t, g, genIPFIX(false, 1, 10))
	waitFor(t, "a batch through after retries", 10*time.Second, func() bool { return g.Stats().Sent == uint64(len(fed)) })
	if g.Reconnects() != 2 || g.Stats().Errors != 2 {
		t.Fatalf("retries %d, errors %d", g.Reconnects(), g.Stats().Errors)
	}
	srv.mu.Lock()
	srv.hold = make(chan struct{})
	srv.mu.Unlock()
	more := feed(t, g, genIPFIX(false, 10, 10)) // 100 records: 1 batch at the server, 3 queued, the rest dropped
	if d := g.Stats().Dropped; d == 0 || d > uint64(len(more)) {
		t.Fatalf("dropped %d of %d", d, len(more))
	}
	close(srv.hold)
	total := uint64(len(fed) + len(more))
	waitFor(t, "every record accounted for", 10*time.Second, func() bool {
		s := g.Stats()
		return s.Sent+s.Dropped == total
	})
	if got, s := len(srv.stored()), g.Stats(); uint64(got) != s.Sent || g.Queued() != 0 {
		t.Fatalf("stored %d, stats %+v, queued %d", got, s, g.Queued())
	}
}

func TestGraphQLParse(t *testing.T) {
	f := func(spec, wantErr string) {
		t.Helper()
		_, err := parseGraphQLSpec(spec)
		if cerr := CheckSpec(spec); (cerr == nil) != (err == nil) {
			t.Errorf("%s: CheckSpec %v, parse %v", spec, cerr, err)
		}
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: error %v, want %q", spec, err, wantErr)
		}
	}
	f("graphql+http://ipfixgraph:8080/graphql", "")
	f("graphql+https://ipfixgraph.example/graphql?batch=500&token_file=/t&queue=100000&retries=0&timeout=3s", "")
	f("graphql+http://h/graphql?list_mutation=ingestIpfixRecords", "")
	f("graphql+ftp://h/graphql", "want graphql+http")
	f("graphql+http:///graphql", "want graphql+http")
	f("graphql+http://h/graphql?batch=0", "batch")
	f("graphql+http://h/graphql?batch=200&queue=100", "batch larger than the queue")
	f("graphql+http://h/graphql?list_mutation=a-b", "list_mutation")
	f("graphql+http://h/graphql?mode=x", "unknown option")
}

// TestGraphQLFieldsKnown: every input field of the table exists in the
// published schema's input types, with the type the table says.
func TestGraphQLFieldsKnown(t *testing.T) {
	srv, _ := newGQLServer(t, "ipjfixsvc.graphqls")
	types := map[string]string{"": "IpfixRecordInput", "dpiInfo": "DpiInfoInput", "bidirectionalFlowInfo": "BidirectionalFlowInfoInput", "certInfo": "CertEnterpriseInfoInput"}
	for _, f := range GraphQLFields {
		def := srv.schema.Types[types[f.Group]]
		fd := def.Fields.ForName(f.Input)
		if fd == nil {
			t.Errorf("%s.%s is not in the schema", def.Name, f.Input)
			continue
		}
		if fd.Type.NamedType != f.Kind {
			t.Errorf("%s.%s is %s, the table says %s", def.Name, f.Input, fd.Type.NamedType, f.Kind)
		}
	}
}
