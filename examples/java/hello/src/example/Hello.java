package example;

import catalyzer.Context;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The Java hello function: handler example.Hello::handler. Built by
 * examples/build.sh into examples/java/hello/fn (the code directory to
 * deploy), against the agent's jar for catalyzer.Context.
 */
public class Hello {
    public Map<String, Object> handler(Map<String, Object> event, Context context) {
        Object name = event == null ? null : event.get("name");
        String who = name == null ? "world" : name.toString();
        System.out.println("hello from java: " + who);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("hello", who);
        out.put("runtime", "java");
        out.put("pid", ProcessHandle.current().pid());
        out.put("function", context.getFunctionName());
        out.put("invocation", context.getInvocationId());
        out.put("remaining_ms", context.getRemainingTimeInMillis());
        return out;
    }
}
