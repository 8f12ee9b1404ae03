package catalyzer;

/** Sends a line to the daemon as a log frame, cut to fit one. */
@FunctionalInterface
public interface Logger {
    void log(String message);
}
