package catalyzer.agent;

import java.io.EOFException;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;

/**
 * The control channel: frames (docs/PROTOCOL.md, Framing) on the socket
 * the instance inherits as its control fd.
 *
 * <p>The JDK cannot open an inherited socket by number: open of
 * /proc/self/fd/N answers ENXIO for a socket, and System.inheritedChannel
 * only looks at fd 0. So the agent makes a FileDescriptor for the number
 * itself (its private fd field, opened to this module alone by
 * --add-opens java.base/java.io=catalyzer) and reads and writes it with
 * plain read(2) and write(2) through FileInputStream and FileOutputStream.
 * No JDK object holds anything but the number, so when a fork or a restore
 * puts a new socket at that number, the same streams use it.
 */
final class Channel {
    static final int VERSION = 1;
    static final int MAX_FRAME = 8 << 20;
    static final int MAX_SMALL_FRAME = 64 << 10;

    static final int INIT = 1, READY = 2, INVOKE = 3, RESULT = 4, ERROR = 5, LOG = 6, FORKED = 7;

    /** A frame the daemon should not have sent; answered, then the agent exits 2. */
    static final class ProtocolError extends Exception {
        private static final long serialVersionUID = 1L;

        ProtocolError(String message) {
            super(message);
        }
    }

    /** One frame: its type and payload. */
    static final class Frame {
        final int type;
        final byte[] payload;

        Frame(int type, byte[] payload) {
            this.type = type;
            this.payload = payload;
        }
    }

    private final FileInputStream in;
    private final FileOutputStream out;

    Channel(int fd) throws ReflectiveOperationException {
        FileDescriptor d = new FileDescriptor();
        Field f = FileDescriptor.class.getDeclaredField("fd");
        f.setAccessible(true);
        f.setInt(d, fd);
        in = new FileInputStream(d);
        out = new FileOutputStream(d);
    }

    /** Reads a frame; null at EOF before a header. */
    Frame read() throws IOException, ProtocolError {
        byte[] h = new byte[8];
        if (!fill(h, true)) {
            return null;
        }
        if (h[0] != 'C' || h[1] != 'Z') {
            throw new ProtocolError("bad frame magic");
        }
        if (h[2] != VERSION) {
            throw new ProtocolError("daemon sent protocol version " + (h[2] & 0xff) + ", agent speaks version " + VERSION);
        }
        int type = h[3] & 0xff;
        long n = (h[4] & 0xffL) << 24 | (h[5] & 0xff) << 16 | (h[6] & 0xff) << 8 | (h[7] & 0xff);
        if (n > MAX_FRAME) {
            throw new ProtocolError("frame of " + n + " bytes exceeds the limit of " + MAX_FRAME);
        }
        byte[] p = new byte[(int) n];
        fill(p, false);
        return new Frame(type, p);
    }

    private boolean fill(byte[] b, boolean eofOK) throws IOException {
        int off = 0;
        while (off < b.length) {
            int r = in.read(b, off, b.length - off);
            if (r < 0) {
                if (off == 0 && eofOK) {
                    return false;
                }
                throw new EOFException("control channel closed inside a frame");
            }
            off += r;
        }
        return true;
    }

    /** Sends one frame in one write, so frames of several threads (log) never interleave. */
    synchronized void send(int type, String json) throws IOException {
        byte[] p = json.getBytes(StandardCharsets.UTF_8);
        byte[] f = new byte[8 + p.length];
        f[0] = 'C';
        f[1] = 'Z';
        f[2] = VERSION;
        f[3] = (byte) type;
        f[4] = (byte) (p.length >>> 24);
        f[5] = (byte) (p.length >>> 16);
        f[6] = (byte) (p.length >>> 8);
        f[7] = (byte) p.length;
        System.arraycopy(p, 0, f, 8, p.length);
        out.write(f);
    }
}
