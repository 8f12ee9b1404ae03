package fn;

import java.security.SecureRandom;
import java.time.*;
import java.time.format.DateTimeFormatter;
import java.util.*;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Pattern;
import java.util.stream.*;

/**
 * The heavy Java function: handler fn.Heavy::handle, built by
 * examples/build.sh into examples/java/heavy/fn (the code directory to
 * deploy), with nothing but the JDK. Its static init does what real
 * functions do: a table, a few hundred JDK classes loaded through
 * streams, lambdas, regex, java.time and text formatting, a daemon ticker
 * thread, and every kind of generator drawn once (so each is seeded in a
 * fork template). TestJavaBoot boots it in every mode; docs/JAVA.md gives
 * its boot latencies from catalyzer bench.
 */
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
        // The ticker must run again after any boot: it has 30 ms to tick,
        // and up to 5 s more on a loaded machine (a thread that never
        // runs again still fails; one that is late says so on stdout).
        long t0 = ticks;
        Thread.sleep(30);
        int late = 0;
        while (ticks == t0 && late < 500) {
            Thread.sleep(10);
            late++;
        }
        if (late > 0) {
            System.out.println("ticker late: first tick after " + (30 + 10 * late) + " ms");
        }
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
