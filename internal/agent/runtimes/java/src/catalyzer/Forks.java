package catalyzer;

import catalyzer.agent.Hooks;

/**
 * Hooks run in every clone of a template (a fork or a restored image),
 * before it serves: the place to reseed state the agent cannot find, such
 * as a {@code java.util.Random} made at class init. Register them at init.
 */
public final class Forks {
    private Forks() {}

    /** Adds a hook, run in registration order in each clone; one that throws fails the clone's boot. */
    public static void afterFork(Runnable hook) {
        if (hook == null) {
            throw new NullPointerException("hook");
        }
        Hooks.add(hook);
    }
}
