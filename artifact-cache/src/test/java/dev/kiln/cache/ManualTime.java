package dev.kiln.cache;

import com.github.benmanes.caffeine.cache.Ticker;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.AbstractExecutorService;
import java.util.concurrent.Callable;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * A ticker and a scheduler on one fake time, for tests that must not sleep: {@link #advance} moves
 * the time and runs each periodic task whenever it comes due, at its due time, on the caller's
 * thread; {@link #jump} moves the time without running anything (a scheduler that fell behind).
 * Each {@link #scheduler()} is a scheduler of its own (shutting one down drops only its tasks).
 * Only fixed-rate periodic tasks are supported, and their futures are not offered (null).
 */
final class ManualTime implements Ticker {
  private long now = 1_000_000_000L;
  private final List<Periodic> periodic = new ArrayList<>();

  private static final class Periodic {
    final Scheduler owner;
    final Runnable task;
    final long period;
    long next;

    Periodic(Scheduler owner, Runnable task, long next, long period) {
      this.owner = owner;
      this.task = task;
      this.next = next;
      this.period = period;
    }
  }

  @Override
  public synchronized long read() {
    return now;
  }

  /** A new scheduler on this time. */
  ScheduledExecutorService scheduler() {
    return new Scheduler();
  }

  /** Moves the time by {@code d} without running any task. */
  synchronized void jump(Duration d) {
    now += d.toNanos();
  }

  /** Moves the time by {@code d}, running every periodic task at each time it comes due. */
  void advance(Duration d) {
    long target;
    synchronized (this) {
      target = now + d.toNanos();
    }
    while (true) {
      Periodic due;
      synchronized (this) {
        due =
            periodic.stream()
                .filter(p -> p.next - target <= 0)
                .min(Comparator.comparingLong(p -> p.next))
                .orElse(null);
        if (due == null) {
          now = target;
          return;
        }
        now = due.next;
        due.next += due.period;
      }
      due.task.run();
    }
  }

  private final class Scheduler extends AbstractExecutorService
      implements ScheduledExecutorService {
    private boolean shutdown;

    @Override
    public ScheduledFuture<?> scheduleAtFixedRate(
        Runnable command, long initialDelay, long period, TimeUnit unit) {
      synchronized (ManualTime.this) {
        if (!shutdown) {
          periodic.add(
              new Periodic(this, command, now + unit.toNanos(initialDelay), unit.toNanos(period)));
        }
      }
      return null;
    }

    @Override
    public ScheduledFuture<?> scheduleWithFixedDelay(
        Runnable command, long initialDelay, long delay, TimeUnit unit) {
      throw new UnsupportedOperationException("only fixed-rate tasks");
    }

    @Override
    public ScheduledFuture<?> schedule(Runnable command, long delay, TimeUnit unit) {
      throw new UnsupportedOperationException("only fixed-rate tasks");
    }

    @Override
    public <V> ScheduledFuture<V> schedule(Callable<V> callable, long delay, TimeUnit unit) {
      throw new UnsupportedOperationException("only fixed-rate tasks");
    }

    @Override
    public void execute(Runnable command) {
      throw new UnsupportedOperationException("only fixed-rate tasks");
    }

    @Override
    public void shutdown() {
      synchronized (ManualTime.this) {
        shutdown = true;
        periodic.removeIf(p -> p.owner == this);
      }
    }

    @Override
    public List<Runnable> shutdownNow() {
      shutdown();
      return List.of();
    }

    @Override
    public boolean isShutdown() {
      synchronized (ManualTime.this) {
        return shutdown;
      }
    }

    @Override
    public boolean isTerminated() {
      return isShutdown();
    }

    @Override
    public boolean awaitTermination(long timeout, TimeUnit unit) {
      return isShutdown();
    }
  }
}
