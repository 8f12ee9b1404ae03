package runtimes_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
)

// jsonDriver feeds documents to the Java agent's codec (catalyzer.agent.Json)
// in one JVM: each line in is a hex document, each line out "ok <hex of
// encode(decode(doc))>" or "err <why>".
const jsonDriver = `import catalyzer.agent.Json;
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

public class Driver {
    public static void main(String[] a) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out), false, StandardCharsets.UTF_8);
        for (String line; (line = in.readLine()) != null;) {
            try {
                String s = Json.encode(Json.decode(HexFormat.of().parseHex(line)));
                out.println("ok " + HexFormat.of().formatHex(s.getBytes(StandardCharsets.UTF_8)));
            } catch (Json.JsonException e) {
                out.println("err " + e.getMessage());
            }
        }
        out.flush();
    }
}
`

// javaCodec runs docs through jsonDriver: ok[i] and out[i] per document.
func javaCodec(t *testing.T, docs [][]byte) (ok []bool, out []string) {
	t.Helper()
	open := []string{"-p", "java/agent.jar", "--add-modules", "catalyzer", "--add-exports", "catalyzer/catalyzer.agent=ALL-UNNAMED"}
	dir := compileJava(t, map[string]string{"Driver.java": jsonDriver}, false, open...)
	var in bytes.Buffer
	for _, d := range docs {
		in.WriteString(hex.EncodeToString(d) + "\n")
	}
	cmd := exec.Command(runtimes.Java, append(open, "-cp", dir, "Driver")...)
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("driver: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		if kind == "ok" {
			b, err := hex.DecodeString(rest)
			if err != nil {
				t.Fatal(err)
			}
			rest = string(b)
		}
		ok = append(ok, kind == "ok")
		out = append(out, rest)
	}
	if len(ok) != len(docs) {
		t.Fatalf("driver answered %d of %d documents\n%s", len(ok), len(docs), stderr.String())
	}
	return ok, out
}

// sameJSON reports whether a and b hold the same value, numbers compared
// by value (the codec writes 1e2 as 100.0).
func sameJSON(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return reflect.DeepEqual(norm(x), norm(y))
}

func norm(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, ok := new(big.Int).SetString(string(v), 10); ok {
			return i.String() // integers are kept exactly
		}
		if f, err := strconv.ParseFloat(string(v), 64); err == nil {
			return strconv.FormatFloat(f, 'g', -1, 64) // what a double keeps
		}
		// Past a double: kept as a BigDecimal, compared as mantissa and
		// exponent (formatting a huge exponent in decimal takes minutes).
		f, _, err := big.ParseFloat(string(v), 10, 200, big.ToNearestEven)
		if err != nil {
			return string(v)
		}
		m := new(big.Float)
		e := f.MantExp(m)
		return m.Text('g', 40) + "p" + strconv.Itoa(e)
	case []any:
		for i := range v {
			v[i] = norm(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = norm(v[k])
		}
	}
	return v
}

// randomJSON writes a random document of nesting at most depth.
func randomJSON(r *rand.Rand, b *strings.Builder, depth int) {
	switch k := r.IntN(9); {
	case k == 0 && depth > 0:
		b.WriteByte('[')
		for i := range r.IntN(4) {
			if i > 0 {
				b.WriteString(" ,")
			}
			randomJSON(r, b, depth-1)
		}
		b.WriteByte(']')
	case k == 1 && depth > 0:
		b.WriteString("{ ")
		for i := range r.IntN(4) {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, "%q:\n", fmt.Sprint("k", r.IntN(5)))
			randomJSON(r, b, depth-1)
		}
		b.WriteByte('}')
	case k == 2:
		fmt.Fprint(b, r.Int64()-r.Int64())
	case k == 3:
		fmt.Fprintf(b, "%g", r.NormFloat64()*1e10)
	case k == 4:
		fmt.Fprintf(b, "%d%s", r.Uint64(), strings.Repeat("7", r.IntN(30))) // past a long
	case k == 5:
		fmt.Fprintf(b, "-0.%de%d", r.IntN(1000), r.IntN(700)-350)
	case k == 6:
		b.WriteString([]string{"true", "false", "null"}[r.IntN(3)])
	default:
		runes := []rune{'a', 'é', '"', '\\', '/', '\n', 0, 0x1f, 0x7f, 0x2028, 0xfffd, 0x1f600, '€'}
		var s strings.Builder
		for range r.IntN(8) {
			s.WriteRune(runes[r.IntN(len(runes))])
		}
		q, _ := json.Marshal(s.String())
		if r.IntN(3) == 0 {
			q = []byte(`"\u00e9\ud83d\ude00\ud800x\/\b\f\r\t"`)
		}
		b.Write(q)
	}
}

// TestJavaJSONCodec: the agent's codec accepts exactly what Go's
// encoding/json accepts, on fixed cases, random documents and random
// mutations of them (except numbers whose exponent is past an int,
// refused by name), and what it writes back holds the same value.
func TestJavaJSONCodec(t *testing.T) {
	needFile(t, runtimes.Java)
	docs := [][]byte{}
	for _, s := range []string{
		`{}`, `[]`, ` 0 `, `-0`, `1E400`, `-1e-400`, `"\u0041"`, `[1,2]`, `{"a":1,"a":2}`,
		`01`, `1.`, `.5`, `+1`, `1e`, `[1,]`, `{"a":1,}`, `{a:1}`, `'s'`, `"\x"`, `"\u12"`, `"\u00g0"`,
		"\"\t\"", `nul`, `truex`, `[1] [2]`, `{"a" 1}`, ``, ` `, `[`, `"`, "\"\xff\"", "[\"\xc3\x28\"]", `NaN`, `Infinity`,
		strings.Repeat("[", 512) + strings.Repeat("]", 512), strings.Repeat("[", 513) + strings.Repeat("]", 513),
	} {
		docs = append(docs, []byte(s))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		var b strings.Builder
		randomJSON(r, &b, 4)
		doc := []byte(b.String())
		docs = append(docs, doc)
		m := bytes.Clone(doc) // a mutation: a byte changed, dropped or doubled
		i := r.IntN(len(m))
		switch r.IntN(3) {
		case 0:
			const pick = "{}[],:\"\\ 0-e.tn\x01"
			m[i] = pick[r.IntN(len(pick))]
		case 1:
			m = append(m[:i], m[i+1:]...)
		default:
			m = append(m[:i+1], m[i:]...)
		}
		docs = append(docs, m)
	}
	ok, out := javaCodec(t, docs)
	for i, d := range docs {
		want := utf8.Valid(d) && json.Valid(d) && !bytes.HasPrefix(d, []byte(strings.Repeat("[", 513)))
		if ok[i] != want && !(want && strings.Contains(out[i], "number out of range")) {
			t.Errorf("%q: java ok=%v (%s), encoding/json ok=%v", d, ok[i], out[i], want)
			continue
		}
		if ok[i] && (!utf8.ValidString(out[i]) || !sameJSON(d, []byte(out[i]))) {
			t.Errorf("%q came back as %q", d, out[i])
		}
	}
}
