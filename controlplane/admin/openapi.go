package admin

import (
	_ "embed"
	"encoding/json"
	"strings"
)

// openapiJSON describes every route of the path set and of the
// controller's bus bridge; a server serves the part it answers.
//
//go:embed openapi.json
var openapiJSON []byte

// Spec returns the whole OpenAPI document.
func Spec() []byte { return openapiJSON }

// specFor cuts the document down to rs: paths and operations a server does
// not answer are left out.
func specFor(rs []Route) []byte {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		panic("BUG: admin: openapi.json: " + err.Error())
	}
	var paths map[string]map[string]json.RawMessage
	if err := json.Unmarshal(doc["paths"], &paths); err != nil {
		panic("BUG: admin: openapi.json paths: " + err.Error())
	}
	served := map[string]map[string]json.RawMessage{}
	for _, r := range rs {
		op, ok := paths[r.Path][strings.ToLower(r.Method)]
		if !ok {
			continue // the test names it
		}
		if served[r.Path] == nil {
			served[r.Path] = map[string]json.RawMessage{}
		}
		served[r.Path][strings.ToLower(r.Method)] = op
		if p, ok := paths[r.Path]["parameters"]; ok {
			served[r.Path]["parameters"] = p
		}
	}
	b, err := json.Marshal(served)
	if err != nil {
		panic("BUG: admin: openapi paths: " + err.Error())
	}
	doc["paths"] = b
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("BUG: admin: openapi: " + err.Error())
	}
	return append(out, '\n')
}
