package dev.kiln.controlplane;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

/** Asks a running server's admin port for the CLI; failures become CLI messages. */
final class AdminClient {

  /** The page's body, or an exception whose message says what to do. */
  static String get(String command, String admin, String pathAndQuery) throws CommandFailure {
    return send(command, admin, pathAndQuery, false, Duration.ofSeconds(10));
  }

  /** POSTs to an action of the admin port (e.g. a collection); its answer's body. */
  static String post(String command, String admin, String pathAndQuery) throws CommandFailure {
    return send(command, admin, pathAndQuery, true, Duration.ofMinutes(10));
  }

  private static String send(
      String command, String admin, String pathAndQuery, boolean post, Duration timeout)
      throws CommandFailure {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    HttpResponse<String> response;
    try {
      HttpRequest.Builder request =
          HttpRequest.newBuilder(URI.create(admin.replaceAll("/+$", "") + pathAndQuery))
              .timeout(timeout);
      if (post) {
        request.POST(HttpRequest.BodyPublishers.noBody());
      }
      response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
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
              + response.body().strip());
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
