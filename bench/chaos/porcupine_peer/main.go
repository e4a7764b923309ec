// Peer for bench/chaos/bench_checker.py: checks a register history with Porcupine
// (github.com/anishathalye/porcupine), partitioned by key, and prints one JSON line.
//
// Input (argv[1]): a JSON array of operations as exported by bench_checker.py:
//
//	{"key": "k3", "f": "read"|"write"|"cas", "arg": int|null, "expected": int|null, "new": int|null,
//	 "out": int|null, "known": bool, "call": int, "ret": int}
//
// Values are small non-negative integers or null (the key does not exist), encoded here as -1.
// "call"/"ret" are event positions in the history; info operations (known=false) return at +infinity.
// The model is written for this benchmark; only the checker is Porcupine's.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

type rawOp struct {
	Key      string `json:"key"`
	F        string `json:"f"`
	Arg      *int   `json:"arg"`
	Expected *int   `json:"expected"`
	New      *int   `json:"new"`
	Out      *int   `json:"out"`
	Known    bool   `json:"known"`
	Call     int64  `json:"call"`
	Ret      int64  `json:"ret"`
}

type input struct {
	key      string
	f        string
	arg      int
	expected int
	new      int
}

type output struct {
	known bool
	value int
}

func val(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}

func step(state interface{}, in interface{}, out interface{}) (bool, interface{}) {
	s := state.(int)
	i := in.(input)
	o := out.(output)
	switch i.f {
	case "read":
		return o.value == s, s
	case "write":
		return true, i.arg
	case "cas":
		if s == i.expected {
			return true, i.new
		}
		return !o.known, s
	}
	panic("unknown f " + i.f)
}

func partition(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var order []string
	for _, op := range history {
		k := op.Input.(input).key
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	var parts [][]porcupine.Operation
	for _, k := range order {
		parts = append(parts, byKey[k])
	}
	return parts
}

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var raw []rawOp
	if err := json.Unmarshal(data, &raw); err != nil {
		panic(err)
	}
	ops := make([]porcupine.Operation, 0, len(raw))
	for i, r := range raw {
		ret := r.Ret
		if !r.Known {
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{
			ClientId: i,
			Input:    input{r.Key, r.F, val(r.Arg), val(r.Expected), val(r.New)},
			Call:     r.Call,
			Output:   output{r.Known, val(r.Out)},
			Return:   ret,
		})
	}
	model := porcupine.Model{
		Partition: partition,
		Init:      func() interface{} { return -1 },
		Step:      step,
	}
	timeout := 60 * time.Second
	t0 := time.Now()
	res := porcupine.CheckOperationsTimeout(model, ops, timeout)
	elapsed := time.Since(t0).Seconds()
	verdict := map[porcupine.CheckResult]string{porcupine.Ok: "ok", porcupine.Illegal: "illegal", porcupine.Unknown: "unknown"}[res]
	out, _ := json.Marshal(map[string]interface{}{"result": verdict, "seconds": elapsed, "ops": len(ops)})
	fmt.Println(string(out))
}
