package catalyzer.agent;

import catalyzer.Context;
import catalyzer.Logger;
import catalyzer.agent.Channel.Frame;
import catalyzer.agent.Channel.ProtocolError;
import catalyzer.agent.Json.JsonException;
import java.io.ByteArrayInputStream;
import java.io.File;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The Catalyzer Java agent: speaks the control protocol (docs/PROTOCOL.md)
 * on the fd named by CATALYZER_CONTROL_FD (default 3), loads the handler
 * named in init ("package.Class::method") from the code dir's classes and
 * jars, and calls it once per invoke, on this thread. On forked it
 * reseeds the JDK's generators (Reseed) and runs catalyzer.Forks hooks.
 *
 * <p>It never writes to stdout or stderr itself. It exits 0 on EOF of the
 * control channel and 2 on a protocol violation by the daemon (after an
 * error frame that says why).
 *
 * <p>Clock: System.nanoTime() is clock_gettime(CLOCK_MONOTONIC) in
 * HotSpot on Linux, the daemon's clock.
 */
public final class Main {
    private static final int DEFAULT_OUTPUT_LIMIT = 64 << 10;
    private static final int MAX_LOG_FRAME = Channel.MAX_SMALL_FRAME;

    private final Channel ch;
    private final Capture capture = new Capture();
    private Reseed reseed; // made at init; a failure fails forked, never a scratch instance
    private Exception reseedError;
    private Handler handler;
    private String function = "";
    private int outputLimit = DEFAULT_OUTPUT_LIMIT;

    private Main(Channel ch) {
        this.ch = ch;
    }

    public static void main(String[] args) {
        // fd 0 is not the handler's: a read of System.in gets EOF.
        System.setIn(new ByteArrayInputStream(new byte[0]));
        int fd = 3;
        String env = System.getenv("CATALYZER_CONTROL_FD");
        Channel ch;
        try {
            if (env != null && !env.isEmpty()) {
                fd = Integer.parseInt(env);
            }
            ch = new Channel(fd);
        } catch (ReflectiveOperationException | RuntimeException e) {
            Runtime.getRuntime().halt(2); // no channel to say why on
            return;
        }
        int code;
        try {
            code = new Main(ch).serve();
        } catch (IOException e) {
            code = 0; // the daemon went away
        }
        Runtime.getRuntime().halt(code);
    }

    /** Serves frames until EOF (0) or a protocol violation (2). */
    private int serve() throws IOException {
        for (;;) {
            try {
                Frame f = ch.read();
                if (f == null) {
                    return 0;
                }
                Map<String, Object> m = object(f);
                switch (f.type) {
                    case Channel.INIT:
                        if (handler != null) {
                            throw new ProtocolError("second init");
                        }
                        init(m);
                        break;
                    case Channel.INVOKE:
                        if (handler == null) {
                            throw new ProtocolError("invoke before a successful init");
                        }
                        invoke(m);
                        break;
                    case Channel.FORKED:
                        forked();
                        break;
                    default:
                        throw new ProtocolError("unexpected message type " + f.type);
                }
            } catch (ProtocolError e) {
                ch.send(Channel.ERROR, "{\"type\":\"ProtocolError\",\"message\":" + str(e.getMessage()) + "}");
                return 2;
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Frame f) throws ProtocolError {
        Object v;
        try {
            v = Json.decode(f.payload);
        } catch (JsonException e) {
            throw new ProtocolError("frame payload is not JSON: " + e.getMessage());
        }
        if (!(v instanceof Map)) {
            throw new ProtocolError("frame payload is not a JSON object");
        }
        return (Map<String, Object>) v;
    }

    private static long num(Object v) {
        return v instanceof Number ? ((Number) v).longValue() : 0;
    }

    private static String str(String s) {
        try {
            return Json.encode(s == null ? "" : s);
        } catch (JsonException e) {
            throw new IllegalStateException(e); // a String always encodes
        }
    }

    private void init(Map<String, Object> m) throws IOException, ProtocolError {
        long version = num(m.get("version"));
        if (version != Channel.VERSION) {
            throw new ProtocolError("init for protocol version " + version + ", agent speaks version " + Channel.VERSION);
        }
        function = String.valueOf(m.getOrDefault("function", ""));
        long limit = num(m.get("output_limit"));
        outputLimit = limit > 0 && limit <= Integer.MAX_VALUE ? (int) limit : DEFAULT_OUTPUT_LIMIT;
        String codeDir = String.valueOf(m.getOrDefault("code_dir", "."));
        String spec = String.valueOf(m.getOrDefault("handler", ""));
        capture.start(0); // output at load time is not kept
        try {
            ClassLoader loader = new URLClassLoader("function", classpath(new File(codeDir)), Main.class.getClassLoader());
            Thread.currentThread().setContextClassLoader(loader);
            handler = Handler.load(spec, loader);
            warmUp();
        } catch (Throwable e) {
            handler = null;
            capture.stop();
            ch.send(Channel.ERROR, errorInfo(e));
            return;
        }
        capture.stop();
        try {
            // Run once here, in what may become a template: the first run
            // loads, links and lazily creates what reseeding touches (the
            // reflection accessors, NativePRNG's mixing SHA1PRNG), ~5 ms
            // that every clone would pay otherwise. Reseeding a fresh JVM
            // changes nothing it relies on.
            reseed = new Reseed();
            reseed.run();
        } catch (ReflectiveOperationException | IOException | RuntimeException e) {
            reseedError = e;
        }
        if (Boolean.TRUE.equals(m.get("template"))) {
            // A template's young generation is full of init's garbage:
            // left there, every clone's first allocations run the young
            // collection of it, copying in each clone the pages it
            // touches (~680 page faults in the VM thread). Collected here
            // once, in the template only: a scratch boot would just pay
            // for it (docs/JAVA.md, "Boot latency").
            System.gc();
        }
        ready();
    }

    /**
     * The code dir's classpath: the dir itself (classes in their package
     * folders), then its *.jar and lib/*.jar, each set in name order.
     */
    static URL[] classpath(File dir) throws MalformedURLException {
        List<URL> urls = new ArrayList<>();
        urls.add(dir.toURI().toURL());
        for (File d : new File[] {dir, new File(dir, "lib")}) {
            File[] jars = d.listFiles((x, name) -> name.endsWith(".jar"));
            if (jars == null) {
                continue;
            }
            Arrays.sort(jars);
            for (File j : jars) {
                if (j.isFile()) {
                    urls.add(j.toURI().toURL());
                }
            }
        }
        return urls.toArray(new URL[0]);
    }

    /**
     * Runs the invocation path once without the handler, so that the
     * classes it loads (JSON codec, context, capture, error formatting)
     * are loaded and linked in the template rather than in every clone.
     */
    private void warmUp() throws JsonException {
        Object ev = Json.decode("{\"s\":\"\\u00e9\",\"n\":[1,2.5,-3e2,true,false,null],\"o\":{}}".getBytes(StandardCharsets.UTF_8));
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("event", ev);
        out.put("list", List.of(1L, 2.5, "x"));
        Json.encode(out);
        new Invocation("warm-up", 1000).getRemainingTimeInMillis();
        capture.start(16);
        System.out.print("x");
        capture.stop();
        errorInfo(new IllegalStateException("warm-up", new RuntimeException()));
    }

    private void ready() throws IOException {
        ch.send(Channel.READY, "{\"version\":" + Channel.VERSION + ",\"pid\":" + ProcessHandle.current().pid()
                + ",\"ready_ns\":" + System.nanoTime() + "}");
    }

    private void forked() throws IOException {
        try {
            if (reseedError != null) {
                throw new IllegalStateException("cannot reseed the JDK's generators: " + reseedError, reseedError);
            }
            if (reseed == null) {
                throw new IllegalStateException("forked before a successful init");
            }
            reseed.run();
            Hooks.run();
        } catch (Throwable e) {
            ch.send(Channel.ERROR, errorInfo(e));
            return;
        }
        ready();
    }

    /** The invocation's Context. */
    private final class Invocation implements Context, Logger {
        private final String id;
        private final long deadline; // System.nanoTime(); 0 = none

        Invocation(String id, long deadlineMS) {
            this.id = id;
            this.deadline = deadlineMS > 0 ? System.nanoTime() + deadlineMS * 1_000_000 : 0;
        }

        @Override
        public String getFunctionName() {
            return function;
        }

        @Override
        public String getInvocationId() {
            return id;
        }

        @Override
        public long getRemainingTimeInMillis() {
            if (deadline == 0) {
                return 0;
            }
            long left = (deadline - System.nanoTime()) / 1_000_000;
            return left > 0 ? left : 0;
        }

        @Override
        public Logger getLogger() {
            return this;
        }

        /** Sends message as a log frame, cut so that the frame fits MAX_LOG_FRAME. */
        @Override
        public void log(String message) {
            String msg = String.valueOf(message);
            String payload;
            for (;;) {
                payload = "{\"id\":" + str(id) + ",\"message\":" + str(msg) + "}";
                int n = payload.getBytes(StandardCharsets.UTF_8).length;
                if (n <= MAX_LOG_FRAME) {
                    break;
                }
                int keep = Math.max(0, (int) ((long) msg.length() * MAX_LOG_FRAME / n) - 64);
                if (keep > 0 && Character.isHighSurrogate(msg.charAt(keep - 1))) {
                    keep--;
                }
                msg = msg.substring(0, keep);
            }
            try {
                ch.send(Channel.LOG, payload);
            } catch (IOException e) {
                // The daemon went away; the main loop sees EOF.
            }
        }
    }

    private void invoke(Map<String, Object> m) throws IOException {
        String id = String.valueOf(m.getOrDefault("id", ""));
        Invocation ctx = new Invocation(id, num(m.get("deadline_ms")));
        Object event = m.get("event");
        capture.start(outputLimit);
        long entry = System.nanoTime();
        Object ret = null;
        Throwable exc = null;
        try {
            ret = handler.call(event, ctx);
        } catch (InvocationTargetException e) {
            exc = e.getCause();
        } catch (Throwable e) {
            exc = e;
        }
        long exit = System.nanoTime();
        Capture.Output out = capture.stop();
        String meta = "\"id\":" + str(id) + ",\"entry_ns\":" + entry + ",\"exit_ns\":" + exit
                + ",\"stdout\":" + str(out.stdout) + ",\"stderr\":" + str(out.stderr) + ",\"truncated\":" + out.truncated;
        String output = null;
        if (exc == null) {
            try {
                output = Json.encode(ret);
            } catch (JsonException | RuntimeException | StackOverflowError e) {
                exc = new SerializationError("handler result is not JSON-serialisable: " + e.getMessage());
            }
        }
        if (exc != null) {
            String info = errorInfo(exc);
            ch.send(Channel.ERROR, "{" + meta + "," + info.substring(1));
            return;
        }
        String payload = "{" + meta + ",\"output\":" + output + "}";
        if (payload.length() > Channel.MAX_FRAME / 3 && payload.getBytes(StandardCharsets.UTF_8).length > Channel.MAX_FRAME) {
            ch.send(Channel.ERROR, "{" + meta + ",\"type\":\"ResultTooLarge\",\"message\":\"result frame exceeds the limit of "
                    + Channel.MAX_FRAME + " bytes\"}");
            return;
        }
        ch.send(Channel.RESULT, payload);
    }

    /** A result the codec cannot write; its type is the protocol's SerializationError. */
    static final class SerializationError extends Exception {
        private static final long serialVersionUID = 1L;

        SerializationError(String message) {
            super(message);
        }
    }

    /**
     * The error frame's type, message and trace as a JSON object: the
     * exception's class name (SerializationError for the agent's own),
     * its message (or its cause's, for an ExceptionInInitializerError),
     * and its stack trace with causes.
     */
    static String errorInfo(Throwable e) {
        String type = e instanceof SerializationError ? "SerializationError" : e.getClass().getName();
        String msg = e.getMessage();
        if (msg == null && e.getCause() != null) {
            msg = e.getCause().toString();
        }
        StringWriter sw = new StringWriter();
        e.printStackTrace(new PrintWriter(sw));
        return "{\"type\":" + str(type) + ",\"message\":" + str(msg) + ",\"trace\":" + str(sw.toString()) + "}";
    }

    /** The handler: a method and, unless it is static, the instance it is called on. */
    static final class Handler {
        private final Method method;
        private final Object target;
        private final boolean withContext;

        private Handler(Method method, Object target) {
            this.method = method;
            this.target = target;
            this.withContext = method.getParameterCount() == 2;
        }

        /**
         * Loads "package.Class::method" through loader, running the class's
         * static init: a public method taking (Map) or (Map, Context) on a
         * public class, static or on an instance made with the public
         * no-argument constructor. The two-argument form wins if both exist.
         */
        static Handler load(String spec, ClassLoader loader) throws ReflectiveOperationException {
            int sep = spec.indexOf("::");
            if (sep <= 0 || sep + 2 >= spec.length() || spec.indexOf("::", sep + 2) >= 0) {
                throw new IllegalArgumentException("handler \"" + spec + "\" is not of the form package.Class::method");
            }
            String cls = spec.substring(0, sep), name = spec.substring(sep + 2);
            Class<?> c = Class.forName(cls, true, loader);
            if (!Modifier.isPublic(c.getModifiers())) {
                throw new IllegalAccessException("class " + cls + " is not public");
            }
            Method best = null;
            for (Method m : c.getMethods()) {
                Class<?>[] p = m.getParameterTypes();
                if (!m.getName().equals(name) || p.length < 1 || p.length > 2 || !p[0].isAssignableFrom(LinkedHashMap.class)
                        || p.length == 2 && !p[1].isAssignableFrom(Invocation.class)) {
                    continue;
                }
                if (best == null || p.length > best.getParameterCount()) {
                    best = m;
                }
            }
            if (best == null) {
                throw new NoSuchMethodException("class " + cls + " has no public method " + name
                        + "(java.util.Map) or " + name + "(java.util.Map, catalyzer.Context)");
            }
            Object target = null;
            if (!Modifier.isStatic(best.getModifiers())) {
                if (Modifier.isAbstract(c.getModifiers())) {
                    throw new InstantiationException("class " + cls + " is abstract and " + name + " is not static");
                }
                target = c.getConstructor().newInstance();
            }
            return new Handler(best, target);
        }

        Object call(Object event, Context ctx) throws ReflectiveOperationException {
            if (event != null && !(event instanceof Map)) {
                throw new IllegalArgumentException("the event is a JSON " + kind(event) + "; a Java handler takes an object (a Map) or null");
            }
            return withContext ? method.invoke(target, event, ctx) : method.invoke(target, event);
        }

        private static String kind(Object v) {
            if (v instanceof List) {
                return "array";
            }
            if (v instanceof String) {
                return "string";
            }
            return v instanceof Boolean ? "boolean" : "number";
        }
    }
}
