package dev.kiln.provisioner.kubernetes;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/** What runs for a {@link UdfWorker}, as its reconciler last saw it. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class UdfWorkerStatus {
  /** {@code Waiting} (no image yet), {@code Starting}, {@code Ready}, {@code Suspended}. */
  private String phase;

  private int pods;
  private int readyPods;
  private List<String> endpoints = new ArrayList<>();
  private Long observedGeneration;
  private String message;

  public String getPhase() {
    return phase;
  }

  public void setPhase(String phase) {
    this.phase = phase;
  }

  /** Pods that exist (starting or ready). */
  public int getPods() {
    return pods;
  }

  public void setPods(int pods) {
    this.pods = pods;
  }

  /** Pods whose runner listener is ready. */
  public int getReadyPods() {
    return readyPods;
  }

  public void setReadyPods(int readyPods) {
    this.readyPods = readyPods;
  }

  /**
   * {@code IP:PORT} of each ready pod's runner listener, sorted: where the Flight side connects.
   */
  public List<String> getEndpoints() {
    return endpoints;
  }

  public void setEndpoints(List<String> endpoints) {
    this.endpoints = endpoints == null ? new ArrayList<>() : endpoints;
  }

  /** The spec's generation this status describes. */
  public Long getObservedGeneration() {
    return observedGeneration;
  }

  public void setObservedGeneration(Long observedGeneration) {
    this.observedGeneration = observedGeneration;
  }

  /** Why the worker is in its phase, for people. */
  public String getMessage() {
    return message;
  }

  public void setMessage(String message) {
    this.message = message;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof UdfWorkerStatus s
        && pods == s.pods
        && readyPods == s.readyPods
        && Objects.equals(phase, s.phase)
        && Objects.equals(endpoints, s.endpoints)
        && Objects.equals(observedGeneration, s.observedGeneration)
        && Objects.equals(message, s.message);
  }

  @Override
  public int hashCode() {
    return Objects.hash(phase, pods, readyPods, endpoints, observedGeneration, message);
  }
}
