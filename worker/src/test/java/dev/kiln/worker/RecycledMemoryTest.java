package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/** Large Arrow blocks are kept once freed and given to the next allocation of their size. */
class RecycledMemoryTest {

  private static final long MIB = 1 << 20;

  private static BufferAllocator allocator(RecycledMemory memory) {
    return new RootAllocator(
        RootAllocator.configBuilder()
            .allocationManagerFactory(memory)
            .roundingPolicy(memory)
            .build());
  }

  @Test
  void aFreedBlockServesTheNextAllocationOfItsSize() {
    RecycledMemory memory = new RecycledMemory(64 * MIB);
    try (BufferAllocator allocator = allocator(memory)) {
      long address;
      try (ArrowBuf first = allocator.buffer(MIB)) {
        address = first.memoryAddress();
        first.setLong(MIB - 8, 42);
      }
      assertThat(memory.keptBytes()).isEqualTo(MIB);
      try (ArrowBuf other = allocator.buffer(2 * MIB)) {
        assertThat(other.memoryAddress()).isNotEqualTo(address);
      }
      try (ArrowBuf again = allocator.buffer(MIB)) {
        assertThat(again.memoryAddress()).isEqualTo(address);
        assertThat(again.getLong(MIB - 8)).isEqualTo(42);
        assertThat(memory.keptBytes()).isEqualTo(2 * MIB);
      }
      // Small allocations are Arrow's pool's, not kept here.
      allocator.buffer(1024).close();
      assertThat(memory.keptBytes()).isEqualTo(3 * MIB);
    }
    memory.freeAll();
    assertThat(memory.keptBytes()).isZero();
  }

  @Test
  void largeSizesRoundToItsStepNotToAPowerOfTwo() {
    RecycledMemory memory = new RecycledMemory(64 * MIB);
    try (BufferAllocator allocator = allocator(memory);
        ArrowBuf large = allocator.buffer(MIB + 1);
        ArrowBuf small = allocator.buffer(100)) {
      assertThat(large.capacity()).isEqualTo(MIB + RecycledMemory.MIN_BYTES);
      assertThat(small.capacity()).isEqualTo(128);
    }
    memory.freeAll();
  }

  @Test
  void keepsNoMoreThanItsLimit() {
    RecycledMemory memory = new RecycledMemory(MIB);
    try (BufferAllocator allocator = allocator(memory)) {
      ArrowBuf a = allocator.buffer(MIB);
      ArrowBuf b = allocator.buffer(MIB);
      a.close();
      b.close();
      assertThat(memory.keptBytes()).isEqualTo(MIB);
    }
    memory.freeAll();
  }

  @Test
  void blocksUnusedForAWhileAreFreed() {
    RecycledMemory memory = new RecycledMemory(64 * MIB);
    try (BufferAllocator allocator = allocator(memory)) {
      allocator.buffer(MIB).close();
      allocator.buffer(4 * MIB).close();
      memory.trim(Duration.ofHours(1));
      assertThat(memory.keptBytes()).isEqualTo(5 * MIB);
      memory.trim(Duration.ZERO);
      assertThat(memory.keptBytes()).isZero();
      // Still serves allocations after a trim.
      allocator.buffer(MIB).close();
      assertThat(memory.keptBytes()).isEqualTo(MIB);
    }
    memory.freeAll();
    assertThat(memory.keptBytes()).isZero();
  }
}
