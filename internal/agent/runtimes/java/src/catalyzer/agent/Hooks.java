package catalyzer.agent;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/** The hooks of catalyzer.Forks; this package is not exported, so only the module reaches run. */
public final class Hooks {
    private static final List<Runnable> hooks = new CopyOnWriteArrayList<>();

    private Hooks() {}

    public static void add(Runnable hook) {
        hooks.add(hook);
    }

    static void run() {
        for (Runnable h : hooks) {
            h.run();
        }
    }
}
