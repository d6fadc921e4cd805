package admin

import "testing"

// Every route that changes something is behind the token: the table
// cannot gain a mutation that forgets it.
func TestEveryMutationNeedsTheToken(t *testing.T) {
	mutations := 0
	for _, r := range routes {
		if r.Method == "GET" || r.Method == "HEAD" {
			continue
		}
		mutations++
		if !r.auth {
			t.Errorf("%s %s does not need the token", r.Method, r.Path)
		}
	}
	if mutations == 0 {
		t.Fatal("no mutating route found in the table")
	}
}
