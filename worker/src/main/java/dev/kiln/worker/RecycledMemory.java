package dev.kiln.worker;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;
import org.apache.arrow.memory.AllocationManager;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.netty.NettyAllocationManager;
import org.apache.arrow.memory.rounding.DefaultRoundingPolicy;
import org.apache.arrow.memory.rounding.RoundingPolicy;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Arrow memory for the Flight endpoint that keeps large blocks for reuse instead of handing them
 * back to the system. Databend's mini-batches (a MiB in, half that out) come and go hundreds of
 * times a second; from Arrow's pooled allocator each often came from a fresh chunk, which the
 * kernel had to map and zero page by page on first touch: page faults were 30% of the CPU of the
 * threads that run calls in a profile of the fast-client benchmark at 256 calls in flight.
 *
 * <p>Blocks of {@link #MIN_BYTES} or more (sizes rounded to a multiple of it) are kept by size once
 * freed, up to {@code maxKept} bytes in all, and given to the next allocation of that size; {@link
 * #trim} frees those unused for a while, so an idle worker does not keep its peak. Smaller
 * allocations go to Arrow's pooled allocator as before. Memory is not zeroed, as with Arrow's own
 * allocators.
 */
final class RecycledMemory implements AllocationManager.Factory, RoundingPolicy {

  /** Allocations this large or larger are kept for reuse. */
  static final long MIN_BYTES = 64 << 10;

  private final long maxKept;
  private final AtomicLong kept = new AtomicLong();
  private final Map<Long, ConcurrentLinkedDeque<Block>> free = new ConcurrentHashMap<>();

  /** A kept block: its address and when it was freed ({@link System#nanoTime()}). */
  private record Block(long address, long freedAt) {}

  /**
   * @param maxKept bytes of freed blocks kept at most
   */
  RecycledMemory(long maxKept) {
    if (maxKept < 0) {
      throw new IllegalArgumentException("maxKept must not be negative, got " + maxKept);
    }
    this.maxKept = maxKept;
  }

  /**
   * Sizes as Arrow rounds them, except that a large one is rounded up to a multiple of {@link
   * #MIN_BYTES} rather than to a power of two: a 65,536-row batch of two BIGINT columns (1.02 MiB)
   * would take a 2 MiB block, and the kept blocks twice the memory the batches use.
   */
  @Override
  public long getRoundedSize(long requestSize) {
    if (requestSize < MIN_BYTES) {
      return DefaultRoundingPolicy.DEFAULT_ROUNDING_POLICY.getRoundedSize(requestSize);
    }
    return (requestSize + MIN_BYTES - 1) / MIN_BYTES * MIN_BYTES;
  }

  @Override
  public AllocationManager create(BufferAllocator accountingAllocator, long size) {
    if (size < MIN_BYTES) {
      return NettyAllocationManager.FACTORY.create(accountingAllocator, size);
    }
    ConcurrentLinkedDeque<Block> blocks = free.get(size);
    Block reused = blocks == null ? null : blocks.pollFirst();
    long address;
    if (reused != null) {
      kept.addAndGet(-size);
      address = reused.address();
    } else {
      address = MemoryUtil.allocateMemory(size);
    }
    return new Recycled(accountingAllocator, address, size);
  }

  @Override
  public ArrowBuf empty() {
    return NettyAllocationManager.FACTORY.empty();
  }

  /** Bytes of freed blocks kept for reuse. */
  long keptBytes() {
    return kept.get();
  }

  /** Frees the kept blocks that were freed more than {@code unused} ago. */
  void trim(Duration unused) {
    long cutoff = System.nanoTime() - unused.toNanos();
    drop(b -> b.freedAt() - cutoff < 0);
  }

  /** Frees every kept block (the allocator is closed; nothing allocates any more). */
  void freeAll() {
    drop(b -> true);
  }

  private void drop(Predicate<Block> old) {
    free.forEach(
        (size, blocks) -> {
          // Most recently freed first: the oldest are at the end.
          for (Block b = blocks.peekLast(); b != null && old.test(b); b = blocks.peekLast()) {
            if (blocks.removeLastOccurrence(b)) {
              kept.addAndGet(-size);
              MemoryUtil.freeMemory(b.address());
            }
          }
        });
  }

  private void release(long address, long size) {
    if (kept.addAndGet(size) <= maxKept) {
      free.computeIfAbsent(size, s -> new ConcurrentLinkedDeque<>())
          .offerFirst(new Block(address, System.nanoTime()));
    } else {
      kept.addAndGet(-size);
      MemoryUtil.freeMemory(address);
    }
  }

  private final class Recycled extends AllocationManager {
    private final long address;
    private final long size;

    Recycled(BufferAllocator accountingAllocator, long address, long size) {
      super(accountingAllocator);
      this.address = address;
      this.size = size;
    }

    @Override
    public long getSize() {
      return size;
    }

    @Override
    protected long memoryAddress() {
      return address;
    }

    @Override
    protected void release0() {
      release(address, size);
    }
  }
}
