package dev.kiln.definition;

import static dev.kiln.definition.SpecErrors.field;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Checks, without running Python, that the UDF code binds the handler name at module level: a
 * {@code def}, {@code async def} or {@code class}, an assignment, or an import. This catches the
 * common mistake (a typo in HANDLER = '...') before any image is built. It errs on the side of
 * accepting: anything it cannot rule out is left to the runner, which reports load errors itself.
 */
public final class HandlerCheck {
  private HandlerCheck() {}

  /** Throws a {@link KilnException} naming the handler and the names the code does define. */
  public static void requireDefined(String code, String handler) throws KilnException {
    if (isDefined(code, handler)) {
      return;
    }
    StringBuilder defined = new StringBuilder();
    Matcher m = Pattern.compile("(?m)^(?:async\\s+)?def\\s+([A-Za-z_][A-Za-z0-9_]*)").matcher(code);
    while (m.find() && defined.length() < 200) {
      defined.append(defined.length() == 0 ? "" : ", ").append(m.group(1));
    }
    throw new KilnException(
            ErrorCode.HANDLER_NOT_DEFINED,
            "the code does not define '"
                + handler
                + "' at module level"
                + (defined.length() > 0
                    ? " (it defines: " + defined + ")"
                    : " (it defines no function)")
                + "; set HANDLER to the name of the function to call")
        .in(field("handler"));
  }

  /** True when the code binds {@code handler} at module level (or might, in ways we can't see). */
  public static boolean isDefined(String code, String handler) {
    String name = Pattern.quote(handler);
    String[] patterns = {
      // def handler(, async def handler(, class handler
      "^(?:async[ \\t]+)?def[ \\t]+" + name + "[ \\t]*\\(",
      "^class[ \\t]+" + name + "\\b",
      // handler = ..., handler: T = ..., a, handler = ...
      "^(?:[A-Za-z_][A-Za-z0-9_]*[ \\t]*,[ \\t]*)*" + name + "[ \\t]*(?::[^=\\n]*)?=(?!=)",
      // import handler / import x as handler / from m import a, handler / from m import (handler)
      "^(?:from[ \\t]+\\S+[ \\t]+)?import[ \\t]+[^#\\n]*\\b" + name + "\\b",
      "^from[ \\t]+\\S+[ \\t]+import[ \\t]*\\([^)]*\\b" + name + "\\b",
      // databend-udf's @udf(name="handler") registers a function under another name
      "\\bname\\s*=\\s*['\"]" + name + "['\"]",
      // something we cannot see through: globals()[...] = ..., exec(...), star imports
      "^[ \\t]*globals\\(\\)",
      "^[ \\t]*exec\\(",
      "^from[ \\t]+\\S+[ \\t]+import[ \\t]+\\*",
    };
    for (String p : patterns) {
      if (Pattern.compile(p, Pattern.MULTILINE).matcher(code).find()) {
        return true;
      }
    }
    return false;
  }
}
