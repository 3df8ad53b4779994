package dev.kiln.definition;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType.Kind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class TypeParserTest {

  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "INT NULL | INT32 NULL",
        "int | INT32 NULL",
        "INT NOT NULL | INT32 NOT NULL",
        "BIGINT NULL | INT64 NULL",
        "INT64 | INT64 NULL",
        "BOOL | BOOLEAN NULL",
        "BOOLEAN NOT NULL | BOOLEAN NOT NULL",
        "DOUBLE NULL | FLOAT64 NULL",
        "FLOAT | FLOAT32 NULL",
        "VARCHAR NULL | STRING NULL",
        "STRING | STRING NULL",
        "TEXT NOT NULL | STRING NOT NULL",
        "TINYINT UNSIGNED NULL | UINT8 NULL",
        "BIGINT UNSIGNED | UINT64 NULL",
        "UINT16 NOT NULL | UINT16 NOT NULL",
        "DECIMAL(15, 2) NULL | DECIMAL(15, 2) NULL",
        "DATE | DATE NULL",
        "DATETIME | TIMESTAMP NULL",
        "JSON | VARIANT NULL",
        "ARRAY(INT32) NULL | ARRAY(INT32 NOT NULL) NULL",
        "ARRAY(INT32 NULL) NULL | ARRAY(INT32 NULL) NULL",
        "MAP(STRING, INT32) NULL | MAP(STRING NOT NULL, INT32 NOT NULL) NULL",
        "TUPLE(1 INT32, 2 STRING) NULL | TUPLE(1 INT32 NOT NULL, 2 STRING NOT NULL) NULL",
        "TUPLE(INT32, STRING NULL) | TUPLE(1 INT32 NOT NULL, 2 STRING NULL) NULL",
        "TUPLE(a INT, b VARCHAR) | TUPLE(a INT32 NOT NULL, b STRING NOT NULL) NULL",
        "VECTOR(3) | VECTOR(3) NULL",
        "Nullable(Int32) | INT32 NULL",
      })
  void parsesToCanonicalForm(String input, String canonical) throws KilnException {
    assertThat(DataType.parse(input).toString()).isEqualTo(canonical);
  }

  @Test
  void canonicalFormParsesToTheSameType() throws KilnException {
    DataType t = DataType.parse("TUPLE(1 ARRAY(INT32 NULL), 2 MAP(STRING, DECIMAL(10, 3))) NULL");
    assertThat(DataType.parse(t.toString())).isEqualTo(t);
    assertThat(t.kind()).isEqualTo(Kind.TUPLE);
    assertThat(t.children().get(1).children().get(1).precision()).isEqualTo(10);
  }

  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "INTT NULL | 'INTT' is not a type name",
        "INT NULL NULL | unexpected 'NULL'",
        "ARRAY(INT | ends too early",
        "DECIMAL(80, 2) | precision must be between 1 and 76",
        "INT NOT | expected NULL after NOT",
        "'' | type string is empty",
      })
  void rejectsBadTypesWithAClearMessage(String input, String message) {
    assertThatThrownBy(() -> DataType.parse(input))
        .isInstanceOf(KilnException.class)
        .hasMessageContaining(message);
  }
}
