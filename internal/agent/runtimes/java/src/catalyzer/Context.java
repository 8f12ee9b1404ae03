package catalyzer;

/** What a handler learns about its invocation (docs/PROTOCOL.md, invoke). */
public interface Context {
    /** The function's name. */
    String getFunctionName();

    /** This invocation's id. */
    String getInvocationId();

    /** The same as {@link #getInvocationId()}, under Lambda's name. */
    default String getAwsRequestId() {
        return getInvocationId();
    }

    /** Milliseconds left before the daemon abandons the call; 0 without a deadline. */
    long getRemainingTimeInMillis();

    /** Sends out-of-band lines to the daemon (log frames). */
    Logger getLogger();

    /** Shorthand for {@code getLogger().log(message)}. */
    default void log(String message) {
        getLogger().log(message);
    }
}
