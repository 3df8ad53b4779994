/**
 * What Databend sends, and nothing else: the JSON spec of {@code ApplyUdfResource} (and, through
 * the same {@link dev.kiln.definition.UdfDefinition}, the script of {@code CreateWorker}),
 * Databend's type strings ({@link dev.kiln.definition.DataType}), the handler check, the PEP 723
 * block as requirement strings, staged imports, the {@link dev.kiln.definition.Tenant} and the
 * {@link dev.kiln.definition.ContentKey}.
 *
 * <p>Allowed dependencies: {@code dev.kiln.base}, Jackson (JSON, and TOML for PEP 723). Nothing
 * here knows Python packaging, images or sandboxes.
 */
package dev.kiln.definition;
