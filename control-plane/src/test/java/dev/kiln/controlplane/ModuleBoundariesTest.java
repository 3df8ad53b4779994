package dev.kiln.controlplane;

import static com.tngtech.archunit.base.DescribedPredicate.not;
import static com.tngtech.archunit.core.domain.JavaClass.Predicates.resideInAPackage;
import static com.tngtech.archunit.core.domain.JavaClass.Predicates.resideInAnyPackage;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The modules' allowed dependencies, checked on their main bytecode. Dependencies point one way:
 * control-plane -> provisioner / worker / image-builder -> artifact-cache / resolver /
 * udf-definition -> base. Each module's package-info says the same in words.
 */
class ModuleBoundariesTest {

  /** Module package -> the Kiln module packages it may use (besides its own). */
  static final Map<String, List<String>> ALLOWED = new LinkedHashMap<>();

  static {
    ALLOWED.put("dev.kiln.base", List.of());
    ALLOWED.put("dev.kiln.definition", List.of("dev.kiln.base"));
    ALLOWED.put("dev.kiln.resolver", List.of("dev.kiln.base"));
    ALLOWED.put("dev.kiln.cache", List.of("dev.kiln.base"));
    ALLOWED.put("dev.kiln.provisioner", List.of("dev.kiln.base"));
    ALLOWED.put("dev.kiln.egress", List.of("dev.kiln.base"));
    ALLOWED.put("dev.kiln.worker", List.of("dev.kiln.base", "dev.kiln.definition"));
    ALLOWED.put(
        "dev.kiln.image",
        List.of("dev.kiln.base", "dev.kiln.definition", "dev.kiln.resolver", "dev.kiln.cache"));
    ALLOWED.put(
        "dev.kiln.controlplane",
        List.of(
            "dev.kiln.base",
            "dev.kiln.definition",
            "dev.kiln.resolver",
            "dev.kiln.cache",
            "dev.kiln.image",
            "dev.kiln.provisioner",
            "dev.kiln.egress",
            "dev.kiln.worker"));
  }

  static JavaClasses kiln;

  @BeforeAll
  static void importKiln() {
    kiln =
        new ClassFileImporter()
            .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
            // Other modules' test jars (shared test helpers) are tests too.
            .withImportOption(location -> !location.contains("-tests.jar"))
            .importPackages("dev.kiln");
  }

  static List<String> modules() {
    return new ArrayList<>(ALLOWED.keySet());
  }

  @ParameterizedTest
  @MethodSource("modules")
  void aModuleUsesOnlyTheModulesItIsAllowedTo(String module) {
    List<String> allowed = new ArrayList<>(ALLOWED.get(module));
    allowed.add(module);
    String[] packages = allowed.stream().map(p -> p + "..").toArray(String[]::new);
    classes()
        .that()
        .resideInAPackage(module + "..")
        .should()
        .onlyDependOnClassesThat(
            not(resideInAPackage("dev.kiln..")).or(resideInAnyPackage(packages)))
        .because(module + " may use only " + ALLOWED.get(module))
        .check(kiln);
  }

  @Test
  void everyModuleIsKnown() {
    classes()
        .should()
        .resideInAnyPackage(modules().stream().map(p -> p + "..").toArray(String[]::new))
        .because("a new module needs its allowed dependencies written down here")
        .check(kiln);
  }

  @Test
  void modulesFormNoCycle() {
    slices().matching("dev.kiln.(*)..").should().beFreeOfCycles().check(kiln);
  }

  @Test
  void theSandboxSideKnowsNoPythonPackagingAndTheWorkerNoImages() {
    noClasses()
        .that()
        .resideInAnyPackage("dev.kiln.provisioner..", "dev.kiln.base..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage("org.apache.arrow..", "com.google.cloud.tools.jib..", "org.jsoup..")
        .check(kiln);
    noClasses()
        .that()
        .resideInAnyPackage("dev.kiln.worker..", "dev.kiln.definition..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage("com.google.cloud.tools.jib..", "org.jsoup..", "org.rocksdb..")
        .check(kiln);
  }
}
