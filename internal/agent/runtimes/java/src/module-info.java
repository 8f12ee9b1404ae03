/**
 * The Catalyzer Java agent (docs/PROTOCOL.md). Package {@code catalyzer}
 * is the API a handler compiles against ({@link catalyzer.Context},
 * {@link catalyzer.Logger}, {@link catalyzer.Forks}); {@code catalyzer.agent}
 * is the agent itself. Being a named module lets the JVM open
 * java.base's internals to the agent alone (--add-opens ...=catalyzer in
 * runtimes.Command), not to the handler's code.
 */
module catalyzer {
    exports catalyzer;
}
