package dev.kiln.worker;

/** Describes a process exit status (exit code, or 128 + signal number) for people. */
final class ExitStatus {

  private static final String[] SIGNALS = {
    null,
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS"
  };

  private ExitStatus() {}

  /** E.g. "killed by SIGABRT" or "exited with status 3". */
  static String describe(int status) {
    int signal = status - 128;
    if (signal > 0 && signal < SIGNALS.length) {
      String text = "killed by " + SIGNALS[signal];
      if (signal == 9) {
        text += ", often the sandbox's memory limit";
      }
      return text;
    }
    if (signal >= SIGNALS.length && signal <= 64) {
      return "killed by signal " + signal;
    }
    return "exited with status " + status;
  }
}
