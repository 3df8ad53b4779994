package dev.kiln.controlplane;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.ForwardingServerCall;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Moves Databend's call metadata into the gRPC context, and adds the content key to the response
 * headers ({@code x-kiln-key}) for tools like {@code kiln apply}; Databend ignores it.
 */
final class CallMetadata implements ServerInterceptor {
  static final Context.Key<String> TENANT = Context.key("x-databend-tenant");
  static final Context.Key<AtomicReference<String>> RESPONSE_KEY = Context.key("x-kiln-key");
  static final Metadata.Key<String> TENANT_HEADER =
      Metadata.Key.of("x-databend-tenant", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> KEY_HEADER =
      Metadata.Key.of("x-kiln-key", Metadata.ASCII_STRING_MARSHALLER);

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(
      ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    AtomicReference<String> key = new AtomicReference<>();
    Context ctx =
        Context.current()
            .withValue(TENANT, headers.get(TENANT_HEADER))
            .withValue(RESPONSE_KEY, key);
    ServerCall<Q, R> wrapped =
        new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
          @Override
          public void sendHeaders(Metadata responseHeaders) {
            String k = key.get();
            if (k != null) {
              responseHeaders.put(KEY_HEADER, k);
            }
            super.sendHeaders(responseHeaders);
          }
        };
    return Contexts.interceptCall(ctx, wrapped, headers, next);
  }
}
