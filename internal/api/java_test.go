package api_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// heavyJava is a Java function with what real ones do at init: a table
// built at class init, a few hundred JDK classes loaded through streams,
// lambdas, regex, java.time and text formatting, a daemon ticker thread,
// and every kind of generator drawn once (so each is seeded in the
// template). It needs nothing but the JDK.
const heavyJava = `package fn;

import java.security.SecureRandom;
import java.time.*;
import java.time.format.DateTimeFormatter;
import java.util.*;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Pattern;
import java.util.stream.*;

public class Heavy {
    static final long[] TABLE = new long[1 << 16];
    static final Map<String, Long> WORDS;
    static final String STAMP;
    static volatile long ticks;

    static {
        long x = 0x9E3779B97F4A7C15L;
        for (int i = 0; i < TABLE.length; i++) {
            x ^= x << 13; x ^= x >>> 7; x ^= x << 17;
            TABLE[i] = x;
        }
        Pattern word = Pattern.compile("[a-z]+");
        WORDS = IntStream.range(0, 20000).mapToObj(i -> "w" + Integer.toString(i % 331, 26))
            .map(s -> s.replaceAll("[0-9]", "x")).filter(s -> word.matcher(s).matches())
            .collect(Collectors.groupingBy(s -> s.substring(0, Math.min(3, s.length())), TreeMap::new, Collectors.counting()));
        STAMP = LocalDateTime.of(2020, 3, 16, 9, 30).atZone(ZoneOffset.UTC).format(DateTimeFormatter.ISO_OFFSET_DATE_TIME)
            + String.format(" %08.3f", Math.PI) + Duration.ofMinutes(90);
        Thread t = new Thread(() -> {
            for (;;) {
                ticks++;
                try { Thread.sleep(2); } catch (InterruptedException e) { return; }
            }
        }, "ticker");
        t.setDaemon(true);
        t.start();
        ThreadLocalRandom.current().nextLong(); Math.random(); UUID.randomUUID(); new SecureRandom().nextLong();
    }

    public Map<String, Object> handle(Map<String, Object> event) throws InterruptedException {
        long t0 = ticks;
        Thread.sleep(30);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ticking", ticks > t0);
        out.put("table", Arrays.stream(TABLE).reduce(0, (a, b) -> a ^ b));
        out.put("words", WORDS.size());
        out.put("stamp", STAMP);
        out.put("cpus", Runtime.getRuntime().availableProcessors());
        out.put("tlr", ThreadLocalRandom.current().nextLong());
        out.put("math", Math.random());
        out.put("uuid", UUID.randomUUID().toString());
        out.put("secure", new SecureRandom().nextLong());
        return out;
    }
}
`

// javaFunction compiles heavyJava into a code directory.
func javaFunction(t *testing.T) string {
	t.Helper()
	javac := filepath.Join(filepath.Dir(runtimes.Java), "javac")
	if err := exec.Command(javac, "-version").Run(); err != nil {
		testutil.Missing(t, "%s: %v (openjdk-17-jdk-headless; scripts/install-deps.sh)", javac, err)
	}
	src := writeCode(t, map[string]string{"fn/Heavy.java": heavyJava})
	out := t.TempDir()
	if b, err := exec.Command(javac, "--release", "17", "-d", out, filepath.Join(src, "fn/Heavy.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, b)
	}
	return out
}

// TestJavaBoot: a Java function with a heavy static init and a ticker
// thread boots by fork, warm and cold restore: its thread runs after the boot, it answers as
// scratch does, and its ThreadLocalRandom, Math.random, UUID and
// SecureRandom values differ across 100 instances.
func TestJavaBoot(t *testing.T) {
	testutil.RequiresRoot(t)
	code := javaFunction(t)
	e := newEnv(t, platform.Config{})
	n := 100
	if testing.Short() {
		n = 10
	}
	checkThreadedBoots(t, e, threadedFunction{"java-heavy",
		wire.DeployRequest{Runtime: "java", Handler: "fn.Heavy::handle", CodePath: code, MaxInstances: 4, MemoryMB: 256},
		[]string{"tlr", "math", "uuid", "secure"}}, n)
}
