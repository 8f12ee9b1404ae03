package catalyzer.agent;

import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * Capture of System.out and System.err during one invocation: both are
 * replaced for the call by streams that keep the first limit bytes. The
 * JDK has no cheap fd-level capture (no memfd, no dup2), so JNI code or a
 * subprocess writing to fd 1 directly is not caught. Outside invocations
 * the JVM's own streams are back, except at load, when output is dropped.
 */
final class Capture {
    private final PrintStream origOut = System.out;
    private final PrintStream origErr = System.err;
    private Sink out, err;

    /** Output kept by stop. */
    static final class Output {
        final String stdout, stderr;
        final boolean truncated;

        Output(String stdout, String stderr, boolean truncated) {
            this.stdout = stdout;
            this.stderr = stderr;
            this.truncated = truncated;
        }
    }

    private static final class Sink extends OutputStream {
        private final byte[] buf;
        private int n;
        private boolean truncated;

        Sink(int limit) {
            buf = new byte[limit];
        }

        @Override
        public synchronized void write(int b) {
            if (n < buf.length) {
                buf[n++] = (byte) b;
            } else {
                truncated = true;
            }
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) {
            int room = Math.min(len, buf.length - n);
            System.arraycopy(b, off, buf, n, room);
            n += room;
            if (room < len) {
                truncated = true;
            }
        }

        synchronized String text() {
            return new String(buf, 0, n, StandardCharsets.UTF_8); // invalid UTF-8 becomes U+FFFD
        }
    }

    void start(int limit) {
        out = new Sink(limit);
        err = new Sink(limit);
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    Output stop() {
        System.out.flush();
        System.err.flush();
        System.setOut(origOut);
        System.setErr(origErr);
        return new Output(out.text(), err.text(), out.truncated || err.truncated);
    }
}
