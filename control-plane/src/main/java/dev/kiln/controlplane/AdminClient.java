package dev.kiln.controlplane;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandlers;
import java.time.Duration;
import java.util.function.Function;
import java.util.stream.Stream;

/** Asks a running server's admin port for the CLI; failures become CLI messages. */
final class AdminClient {

  /** The page's body, or an exception whose message says what to do. */
  static String get(String command, String admin, String pathAndQuery) throws CommandFailure {
    return send(
        command,
        admin,
        pathAndQuery,
        false,
        Duration.ofSeconds(10),
        BodyHandlers.ofString(),
        b -> b);
  }

  /** POSTs to an action of the admin port (e.g. a collection); its answer's body. */
  static String post(String command, String admin, String pathAndQuery) throws CommandFailure {
    return send(
        command,
        admin,
        pathAndQuery,
        true,
        Duration.ofMinutes(10),
        BodyHandlers.ofString(),
        b -> b);
  }

  /**
   * A page the server streams (a line per event, such as {@code /udfs/<key>/progress}), read as it
   * comes; the stream ends with the page, or with {@code timeout}.
   */
  static Stream<String> lines(String command, String admin, String pathAndQuery, Duration timeout)
      throws CommandFailure {
    return send(
        command,
        admin,
        pathAndQuery,
        false,
        timeout,
        BodyHandlers.ofLines(),
        b -> String.join("\n", b.toList()));
  }

  private static <T> T send(
      String command,
      String admin,
      String pathAndQuery,
      boolean post,
      Duration timeout,
      HttpResponse.BodyHandler<T> body,
      Function<T, String> text)
      throws CommandFailure {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    HttpResponse<T> response;
    try {
      HttpRequest.Builder request =
          HttpRequest.newBuilder(URI.create(admin.replaceAll("/+$", "") + pathAndQuery))
              .timeout(timeout);
      if (post) {
        request.POST(HttpRequest.BodyPublishers.noBody());
      }
      response = http.send(request.build(), body);
    } catch (IOException e) {
      throw new CommandFailure(
          command
              + ": cannot reach "
              + admin
              + " ("
              + e.getMessage()
              + "); is kiln serve running there? (--admin)");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new CommandFailure(command + ": interrupted");
    }
    if (response.statusCode() != 200) {
      throw new CommandFailure(
          command
              + ": "
              + admin
              + " answered "
              + response.statusCode()
              + ": "
              + text.apply(response.body()).strip());
    }
    return response.body();
  }

  /** A CLI command failed; the message is what to print. */
  static final class CommandFailure extends Exception {
    private static final long serialVersionUID = 1L;

    CommandFailure(String message) {
      super(message);
    }
  }

  private AdminClient() {}
}
