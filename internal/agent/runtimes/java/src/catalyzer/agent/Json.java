package catalyzer.agent;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A strict JSON codec (RFC 8259), the agent's own so that it needs no jar.
 *
 * <p>Decoding takes exactly one value, optionally surrounded by white
 * space, from UTF-8 (invalid UTF-8 is an error). Objects become
 * LinkedHashMap (a repeated key keeps its last value, as Go, Python and
 * JavaScript do), arrays ArrayList, integers Long or BigInteger when they
 * do not fit, other numbers Double or BigDecimal when a Double would be
 * infinite (an error when the exponent is past an int, the one valid
 * document refused), true/false Boolean, null null. Nesting deeper than MAX_DEPTH
 * is an error.
 *
 * <p>Encoding takes Map (String keys), Collection, CharSequence,
 * Character, Boolean, null and the JDK's integer and decimal Numbers;
 * anything else, a non-finite double or nesting deeper than MAX_DEPTH (a
 * cycle) is an error. A lone surrogate is written as U+FFFD, so the output
 * is always valid UTF-8.
 */
public final class Json {
    /** Deepest nesting either way. */
    public static final int MAX_DEPTH = 512;

    /** A malformed document, or a value that cannot be encoded. */
    public static final class JsonException extends Exception {
        private static final long serialVersionUID = 1L;

        JsonException(String message) {
            super(message);
        }
    }

    private Json() {}

    public static Object decode(byte[] utf8) throws JsonException {
        CharBuffer cb;
        try {
            cb = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(utf8));
        } catch (CharacterCodingException e) {
            throw new JsonException("invalid UTF-8");
        }
        return decode(cb.toString());
    }

    public static Object decode(String s) throws JsonException {
        Parser p = new Parser(s);
        p.space();
        Object v = p.value(0);
        p.space();
        if (p.i != s.length()) {
            throw p.fail("data after the value");
        }
        return v;
    }

    private static final class Parser {
        final String s;
        int i;

        Parser(String s) {
            this.s = s;
        }

        JsonException fail(String why) {
            return new JsonException(why + " at offset " + i);
        }

        void space() {
            while (i < s.length()) {
                char c = s.charAt(i);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                    return;
                }
                i++;
            }
        }

        Object value(int depth) throws JsonException {
            if (i >= s.length()) {
                throw fail("unexpected end");
            }
            char c = s.charAt(i);
            switch (c) {
                case '{':
                    return object(depth + 1);
                case '[':
                    return array(depth + 1);
                case '"':
                    return string();
                case 't':
                    return word("true", Boolean.TRUE);
                case 'f':
                    return word("false", Boolean.FALSE);
                case 'n':
                    return word("null", null);
                default:
                    if (c == '-' || c >= '0' && c <= '9') {
                        return number();
                    }
                    throw fail("unexpected character " + quote(c));
            }
        }

        Object word(String w, Object v) throws JsonException {
            if (!s.startsWith(w, i)) {
                throw fail("invalid literal");
            }
            i += w.length();
            return v;
        }

        Map<String, Object> object(int depth) throws JsonException {
            if (depth > MAX_DEPTH) {
                throw fail("nesting deeper than " + MAX_DEPTH);
            }
            i++;
            Map<String, Object> m = new LinkedHashMap<>();
            space();
            if (i < s.length() && s.charAt(i) == '}') {
                i++;
                return m;
            }
            for (;;) {
                space();
                if (i >= s.length() || s.charAt(i) != '"') {
                    throw fail("object key is not a string");
                }
                String k = string();
                space();
                expect(':');
                space();
                m.put(k, value(depth));
                space();
                if (i < s.length() && s.charAt(i) == ',') {
                    i++;
                    continue;
                }
                expect('}');
                return m;
            }
        }

        List<Object> array(int depth) throws JsonException {
            if (depth > MAX_DEPTH) {
                throw fail("nesting deeper than " + MAX_DEPTH);
            }
            i++;
            List<Object> l = new ArrayList<>();
            space();
            if (i < s.length() && s.charAt(i) == ']') {
                i++;
                return l;
            }
            for (;;) {
                space();
                l.add(value(depth));
                space();
                if (i < s.length() && s.charAt(i) == ',') {
                    i++;
                    continue;
                }
                expect(']');
                return l;
            }
        }

        void expect(char c) throws JsonException {
            if (i >= s.length() || s.charAt(i) != c) {
                throw fail("expected " + quote(c));
            }
            i++;
        }

        String string() throws JsonException {
            i++; // the opening quote
            StringBuilder b = null;
            int start = i;
            for (;;) {
                if (i >= s.length()) {
                    throw fail("unterminated string");
                }
                char c = s.charAt(i);
                if (c == '"') {
                    String tail = s.substring(start, i++);
                    return b == null ? tail : b.append(tail).toString();
                }
                if (c < 0x20) {
                    throw fail("control character in a string");
                }
                if (c != '\\') {
                    i++;
                    continue;
                }
                if (b == null) {
                    b = new StringBuilder();
                }
                b.append(s, start, i);
                if (++i >= s.length()) {
                    throw fail("unterminated escape");
                }
                char e = s.charAt(i++);
                switch (e) {
                    case '"': b.append('"'); break;
                    case '\\': b.append('\\'); break;
                    case '/': b.append('/'); break;
                    case 'b': b.append('\b'); break;
                    case 'f': b.append('\f'); break;
                    case 'n': b.append('\n'); break;
                    case 'r': b.append('\r'); break;
                    case 't': b.append('\t'); break;
                    case 'u': b.append(hex4()); break;
                    default:
                        i--;
                        throw fail("invalid escape \\" + e);
                }
                start = i;
            }
        }

        char hex4() throws JsonException {
            if (i + 4 > s.length()) {
                throw fail("short \\u escape");
            }
            int v = 0;
            for (int k = 0; k < 4; k++) {
                int d = Character.digit(s.charAt(i + k), 16);
                if (d < 0 || s.charAt(i + k) > 'f') {
                    throw fail("invalid \\u escape");
                }
                v = v << 4 | d;
            }
            i += 4;
            return (char) v;
        }

        Object number() throws JsonException {
            int start = i;
            boolean integral = true;
            if (s.charAt(i) == '-') {
                i++;
            }
            if (i < s.length() && s.charAt(i) == '0') {
                i++;
            } else if (!digits()) {
                throw fail("invalid number");
            }
            if (i < s.length() && s.charAt(i) == '.') {
                i++;
                integral = false;
                if (!digits()) {
                    throw fail("invalid number");
                }
            }
            if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
                i++;
                integral = false;
                if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                    i++;
                }
                if (!digits()) {
                    throw fail("invalid number");
                }
            }
            String n = s.substring(start, i);
            if (integral) {
                if (n.length() <= 18) {
                    return Long.parseLong(n);
                }
                BigInteger big = new BigInteger(n);
                return big.bitLength() < 64 ? (Object) big.longValue() : big;
            }
            double d = Double.parseDouble(n);
            if (!Double.isInfinite(d)) {
                return d;
            }
            try {
                return new BigDecimal(n);
            } catch (NumberFormatException e) {
                throw fail("number out of range (its exponent does not fit an int)");
            }
        }

        boolean digits() {
            int start = i;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
            return i > start;
        }
    }

    private static String quote(char c) {
        return c >= 0x20 && c < 0x7f ? "'" + c + "'" : String.format("U+%04X", (int) c);
    }

    /** Encodes v as JSON text. */
    public static String encode(Object v) throws JsonException {
        StringBuilder b = new StringBuilder();
        write(b, v, 0);
        return b.toString();
    }

    private static void write(StringBuilder b, Object v, int depth) throws JsonException {
        if (v == null) {
            b.append("null");
        } else if (v instanceof CharSequence || v instanceof Character) {
            string(b, v.toString());
        } else if (v instanceof Boolean) {
            b.append(((Boolean) v).booleanValue());
        } else if (v instanceof Number) {
            number(b, (Number) v);
        } else if (v instanceof Map) {
            if (depth >= MAX_DEPTH) {
                throw new JsonException("nesting deeper than " + MAX_DEPTH + " (a cycle?)");
            }
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!(e.getKey() instanceof String)) {
                    throw new JsonException("map key " + typeName(e.getKey()) + " is not a String");
                }
                if (!first) {
                    b.append(',');
                }
                first = false;
                string(b, (String) e.getKey());
                b.append(':');
                write(b, e.getValue(), depth + 1);
            }
            b.append('}');
        } else if (v instanceof Collection) {
            if (depth >= MAX_DEPTH) {
                throw new JsonException("nesting deeper than " + MAX_DEPTH + " (a cycle?)");
            }
            b.append('[');
            boolean first = true;
            for (Object e : (Collection<?>) v) {
                if (!first) {
                    b.append(',');
                }
                first = false;
                write(b, e, depth + 1);
            }
            b.append(']');
        } else {
            throw new JsonException("cannot encode a " + typeName(v));
        }
    }

    private static void number(StringBuilder b, Number n) throws JsonException {
        if (n instanceof Double || n instanceof Float) {
            double d = n.doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new JsonException("cannot encode " + d);
            }
            b.append(n instanceof Float ? Float.toString(n.floatValue()) : Double.toString(d));
        } else if (n instanceof Long || n instanceof Integer || n instanceof Short || n instanceof Byte
                || n instanceof BigInteger || n instanceof AtomicInteger || n instanceof AtomicLong) {
            b.append(n.toString());
        } else if (n instanceof BigDecimal) {
            b.append(((BigDecimal) n).toString()); // "1E+10" is valid JSON
        } else {
            throw new JsonException("cannot encode a " + typeName(n));
        }
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    private static void string(StringBuilder b, String s) {
        b.append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            switch (c) {
                case '"': b.append("\\\""); continue;
                case '\\': b.append("\\\\"); continue;
                case '\n': b.append("\\n"); continue;
                case '\r': b.append("\\r"); continue;
                case '\t': b.append("\\t"); continue;
                default:
                    break;
            }
            if (c < 0x20) {
                b.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 15]);
            } else if (Character.isHighSurrogate(c) && k + 1 < s.length() && Character.isLowSurrogate(s.charAt(k + 1))) {
                b.append(c).append(s.charAt(++k));
            } else if (Character.isSurrogate(c)) {
                b.append('\ufffd');
            } else {
                b.append(c);
            }
        }
        b.append('"');
    }

    private static String typeName(Object o) {
        return o == null ? "null" : o.getClass().getName();
    }
}
