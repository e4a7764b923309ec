// Command gen_lzw regenerates tests/unit/data/lzw_vectors.json with Go's own compress/lzw
// (LSB order, literal width 8: the settings memberlist uses for compressed messages).
//
// It uses only the standard library. Run from the repository root:
//
//	go run ./tests/vectors/gen_lzw > tests/unit/data/lzw_vectors.json
//
// Large inputs are not stored in the JSON: they are described by a kind ("lcg_text", "pcg_bytes",
// "zeros") plus seed and length, and tests/unit/test_lzw.py rebuilds them with the same formulas.
package main

import (
	"bytes"
	"compress/lzw"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
)

type vector struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Seed      uint64 `json:"seed,omitempty"`
	Length    int    `json:"length,omitempty"`
	InputHex  string `json:"input_hex,omitempty"`
	OutputHex string `json:"output_hex"`
}

var words = []string{
	"consul", "serf", "memberlist", "gossip", "node", "alive", "suspect", "dead", "push", "pull",
	"ack", "ping", "indirect", "key", "ring", "lan", "wan", "agent", "the", "a",
}

// lcgText: words picked by a 32-bit LCG, ten per line, cut to n bytes.
func lcgText(seed uint32, n int) []byte {
	var b bytes.Buffer
	state := seed
	count := 0
	for b.Len() < n {
		state = state*1103515245 + 12345
		count++
		b.WriteString(words[(state>>16)%uint32(len(words))])
		if count%10 == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// pcgBytes: the top byte of a 64-bit LCG per output byte.
func pcgBytes(seed uint64, n int) []byte {
	out := make([]byte, n)
	state := seed
	for i := range out {
		state = state*6364136223846793005 + 1442695040888963407
		out[i] = byte(state >> 56)
	}
	return out
}

func compress(data []byte) string {
	var b bytes.Buffer
	w := lzw.NewWriter(&b, lzw.LSB, 8)
	if _, err := w.Write(data); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b.Bytes())
}

// pack writes codes LSB first with the reader's width schedule (9 bits after a clear, one more
// bit each time the next free code reaches 1<<width, frozen at 12 bits once the table is full).
func pack(codes []int) []byte {
	var out []byte
	var acc uint64
	nbits := uint(0)
	width, hi := uint(9), 257
	for _, code := range codes {
		acc |= uint64(code) << nbits
		nbits += width
		for nbits >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			nbits -= 8
		}
		if code == 256 {
			width, hi = 9, 257
			continue
		}
		hi++
		if hi >= 1<<width {
			if width == 12 {
				hi--
			} else {
				width++
			}
		}
	}
	if nbits > 0 {
		out = append(out, byte(acc))
	}
	return out
}

// frozenTable is a hand-built stream that Go's writer never produces: no leading clear code,
// 3839 literals that fill the 4096-entry table (the reader then keeps it frozen at 12 bits),
// codes that use the frozen table, then a clear and a KwKwK code (260 right after 258).
func frozenTable() vector {
	var codes []int
	for i := 0; i < 3839; i++ {
		codes = append(codes, (i*7)%256)
	}
	codes = append(codes, 4095, 4000, 300, 258, 65, 4095, 256, 120, 121, 258, 260, 257)
	stream := pack(codes)
	decoded, err := io.ReadAll(lzw.NewReader(bytes.NewReader(stream), lzw.LSB, 8))
	if err != nil {
		panic(err)
	}
	// For this kind, input_hex is what Go's reader decoded and output_hex the stream.
	return vector{Name: "frozen_table_go_decode", Kind: "go_decode",
		InputHex: hex.EncodeToString(decoded), OutputHex: hex.EncodeToString(stream)}
}

func literal(name string, data []byte) vector {
	return vector{Name: name, Kind: "hex", InputHex: hex.EncodeToString(data), OutputHex: compress(data)}
}

func main() {
	allBytes := make([]byte, 512)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	vectors := []vector{
		literal("empty", nil),
		literal("one_byte", []byte("a")),
		literal("tobeornot", []byte("TOBEORNOTTOBEORTOBEORNOT#")),
		literal("all_bytes_twice", allBytes),
		literal("kwkwk", bytes.Repeat([]byte("ab"), 10)),
		{Name: "text_60k", Kind: "lcg_text", Seed: 7, Length: 60000, OutputHex: compress(lcgText(7, 60000))},
		{Name: "text_11k", Kind: "lcg_text", Seed: 42, Length: 11000, OutputHex: compress(lcgText(42, 11000))},
		{Name: "random_12k", Kind: "pcg_bytes", Seed: 1, Length: 12000, OutputHex: compress(pcgBytes(1, 12000))},
		// 7908 bytes: Go's writer emits a clear code between the last data code and EOF.
		{Name: "random_clear_at_close", Kind: "pcg_bytes", Seed: 1, Length: 7908,
			OutputHex: compress(pcgBytes(1, 7908))},
		{Name: "zeros_100k", Kind: "zeros", Length: 100000, OutputHex: compress(make([]byte, 100000))},
		frozenTable(),
	}
	out, err := json.MarshalIndent(vectors, "", " ")
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(out, '\n'))
}
