package dev.kiln.worker;

import org.apache.arrow.flight.CallHeaders;
import org.apache.arrow.flight.CallInfo;
import org.apache.arrow.flight.CallStatus;
import org.apache.arrow.flight.FlightServerMiddleware;
import org.apache.arrow.flight.RequestContext;

/** Hands a call's request headers to the producer, which Flight does not do by itself. */
final class CallHeadersMiddleware implements FlightServerMiddleware {

  static final Key<CallHeadersMiddleware> KEY = Key.of("kiln-call-headers");

  private final CallHeaders headers;

  private CallHeadersMiddleware(CallHeaders headers) {
    this.headers = headers;
  }

  /** The first value of a header, or null. */
  String get(String name) {
    return headers.get(name);
  }

  @Override
  public void onBeforeSendingHeaders(CallHeaders outgoingHeaders) {}

  @Override
  public void onCallCompleted(CallStatus status) {}

  @Override
  public void onCallErrored(Throwable err) {}

  /** Registered on the server under {@link #KEY}. */
  static final class Factory implements FlightServerMiddleware.Factory<CallHeadersMiddleware> {
    @Override
    public CallHeadersMiddleware onCallStarted(
        CallInfo info, CallHeaders incomingHeaders, RequestContext context) {
      return new CallHeadersMiddleware(incomingHeaders);
    }
  }
}
