package dev.kiln.definition;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class HandlerCheckTest {
  @Test
  void acceptsEveryWayToBindAName() {
    assertThat(HandlerCheck.isDefined("def f(x):\n  return x", "f")).isTrue();
    assertThat(HandlerCheck.isDefined("@udf(input_types=['INT'])\ndef f(x):\n  return x", "f"))
        .isTrue();
    assertThat(HandlerCheck.isDefined("async def f(x): ...", "f")).isTrue();
    assertThat(HandlerCheck.isDefined("class f:\n  pass", "f")).isTrue();
    assertThat(HandlerCheck.isDefined("f = lambda x: x", "f")).isTrue();
    assertThat(HandlerCheck.isDefined("f: object = len", "f")).isTrue();
    assertThat(HandlerCheck.isDefined("from math import sqrt as f", "f")).isTrue();
    assertThat(HandlerCheck.isDefined("from math import (floor,\n f)", "f")).isTrue();
    assertThat(HandlerCheck.isDefined("import f", "f")).isTrue();
    assertThat(
            HandlerCheck.isDefined(
                "from databend_udf import udf\n@udf(name='f', input_types=['INT'],"
                    + " result_type='INT')\ndef impl(x):\n  return x",
                "f"))
        .isTrue();
  }

  @Test
  void rejectsNamesThatAreOnlyUsedOrNested() {
    assertThat(HandlerCheck.isDefined("def g(x):\n  return f(x)", "f")).isFalse();
    assertThat(HandlerCheck.isDefined("def g():\n  def f(): pass", "f")).isFalse();
    assertThat(HandlerCheck.isDefined("if f == 1: pass", "f")).isFalse();
    assertThat(HandlerCheck.isDefined("def ff(x): pass", "f")).isFalse();
  }

  @Test
  void errorListsTheFunctionsTheCodeDefines() {
    assertThatThrownBy(
            () -> HandlerCheck.requireDefined("def add(x):\n  pass\ndef sub(x): pass", "addd"))
        .hasMessageContaining("does not define 'addd'")
        .hasMessageContaining("add, sub");
  }
}
