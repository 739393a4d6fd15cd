/**
 * Prometheus metrics (ARCHITECTURE.md §13), served at `/metrics` in the text format. One registry per server
 * (several servers can live in one process, as in tests). Names and labels are part of the public
 * surface: dashboards and alerts depend on them (README: "Metrics"). Labels are bounded sets
 * (transports, reasons, codes), never channel names: per-channel health is `health`, served as JSON.
 *
 * The same object carries the server's other observability, so every part that counts can reach
 * it: `health` (delivery health per channel) and `tracing` (OpenTelemetry spans, when enabled).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { DeliveryHealth } from './delivery-health.ts';
import type { Tracing } from './tracing.ts';

export type { TransportKind } from '@mooring/protocol';

export class Metrics {
  readonly registry = new Registry();
  readonly connections: Gauge<'transport'>;
  readonly connectionsOpened: Counter<'transport' | 'resumed'>;
  readonly connectionsClosed: Counter<'transport' | 'reason'>;
  readonly attaches: Counter<'mode' | 'resumed'>;
  readonly resumeFailures: Counter<'reason'>;
  readonly catchUpMessages: Counter;
  readonly operations: Counter<'action'>;
  readonly errors: Counter<'code'>;
  readonly leaseExpiries: Counter<'outcome'>;
  readonly inboundThrottled: Counter;
  readonly framesDeferred: Counter;
  readonly fanOutPasses: Counter<'what'>;
  readonly presenceMerged: Counter;
  readonly inboundBodiesWaited: Counter;
  /** The leases this node holds or waits on (`mooring_leases`), read when /metrics is scraped. */
  leaseCount: () => number = () => 0;
  /** Token holders with an inbound budget on this node (`mooring_inbound_identities`). */
  inboundIdentities: () => number = () => 0;
  readonly publishSeconds: Histogram;
  readonly storeSeconds: Histogram<'operation'>;
  /**
   * The series every publish touches, resolved once: `observe(labels, value)` builds a labels
   * object and a closure per call, which at thousands of publishes a second is garbage the young
   * generation collects (about half of prom-client's allocation per call goes).
   */
  readonly hot: {
    publishSeconds: Histogram.Internal<string>;
    storeAppendSeconds: Histogram.Internal<'operation'>;
    storeReadSeconds: Histogram.Internal<'operation'>;
    /** `mooring_operations_total` by action. */
    operation(action: string): void;
  };
  /** Delivery health per channel (delivery-health.ts). */
  readonly health = new DeliveryHealth();
  /** OpenTelemetry spans; undefined when tracing is off (the default). */
  tracing: Tracing | undefined;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'mooring_' });
    this.connections = new Gauge({
      name: 'mooring_connections',
      help: 'Open realtime connections',
      labelNames: ['transport'],
      registers,
    });
    this.connectionsOpened = new Counter({
      name: 'mooring_connections_opened_total',
      help: 'Realtime connections opened; resumed="true" when they took a dropped connection’s identity back',
      labelNames: ['transport', 'resumed'],
      registers,
    });
    this.connectionsClosed = new Counter({
      name: 'mooring_connections_closed_total',
      help: 'Realtime connections closed, by reason (closed: by the client; lost: network; slow_consumer; heartbeat_timeout; token_expired; shutting_down; replaced)',
      labelNames: ['transport', 'reason'],
      registers,
    });
    this.attaches = new Counter({
      name: 'mooring_attaches_total',
      help: 'Channel attaches by mode (live, resume, rewind, start); for resume, whether continuity held',
      labelNames: ['mode', 'resumed'],
      registers,
    });
    this.resumeFailures = new Counter({
      name: 'mooring_resume_failures_total',
      help: 'Resumes answered resumed:false, by reason (epoch_changed, position_trimmed, position_ahead, history_required)',
      labelNames: ['reason'],
      registers,
    });
    this.catchUpMessages = new Counter({
      name: 'mooring_catchup_messages_total',
      help: 'Rolled-up messages sent to catch attaching clients up (resume, rewind, start)',
      registers,
    });
    this.operations = new Counter({
      name: 'mooring_operations_total',
      help: 'Operations stored, by action',
      labelNames: ['action'],
      registers,
    });
    this.errors = new Counter({
      name: 'mooring_errors_total',
      help: 'Errors answered to clients (frames, REST and refused connection requests), by code',
      labelNames: ['code'],
      registers,
    });
    this.leaseExpiries = new Counter({
      name: 'mooring_lease_expiries_total',
      help: 'Lease expiries by outcome (abandoned: the run marked abandoned; changed: the message was written or its run ended meanwhile, nothing stored; gone: the message was deleted or already abandoned)',
      labelNames: ['outcome'],
      registers,
    });
    this.inboundThrottled = new Counter({
      name: 'mooring_inbound_throttled_total',
      help: 'WebSocket frames or pieces of a request body after which a token identity was over maxInboundBytesRate on this node, so its connection or request stopped being read until the budget refilled',
      registers,
    });
    this.framesDeferred = new Counter({
      name: 'mooring_frames_deferred_total',
      help: 'WebSocket frames handled in a later turn of the event loop than their read: a connection sent more than 64 in one read (pipelining), the rest waited with its socket unread while other connections were served',
      registers,
    });
    this.fanOutPasses = new Counter({
      name: 'mooring_fanout_passes_total',
      help: 'Deliveries (what="messages") and presence changes (what="presence") to a channel with more than 256 subscribers on this node, handed out 256 (frames) per turn of the event loop so that the node serves its other connections between the shares',
      labelNames: ['what'],
      registers,
    });
    this.presenceMerged = new Counter({
      name: 'mooring_presence_changes_merged_total',
      help: 'Presence changes of a crowded channel (more than 256 subscribers on this node) never written to its subscribers: the same member changed again while the node was still writing an earlier change (PROTOCOL.md §6.4: the set is the same)',
      registers,
    });
    this.inboundBodiesWaited = new Counter({
      name: 'mooring_inbound_bodies_waited_total',
      help: 'Request bodies of a token identity that waited, unread, because 8 of its bodies were being read on this node',
      registers,
    });
    const metrics = this;
    new Gauge({
      name: 'mooring_inbound_identities',
      help: 'Token holders (key + clientId, or one token without a clientId) with a maxInboundBytesRate budget on this node: a connection or a request body being read now, or a budget still refilling',
      registers,
      collect() {
        this.set(metrics.inboundIdentities());
      },
    });
    new Gauge({
      name: 'mooring_leases',
      help: 'Message leases this node holds or waits on (with Redis: those taken or renewed through this node)',
      registers,
      collect() {
        this.set(metrics.leaseCount());
      },
    });
    this.publishSeconds = new Histogram({
      name: 'mooring_publish_seconds',
      help: 'From a publish received to its operations stored and handed to subscribers’ connections',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.storeSeconds = new Histogram({
      name: 'mooring_store_seconds',
      help: 'Store calls by operation (append, read)',
      labelNames: ['operation'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    const byAction = new Map<string, Counter.Internal>();
    const operations = this.operations;
    this.hot = {
      publishSeconds: this.publishSeconds.labels(),
      storeAppendSeconds: this.storeSeconds.labels({ operation: 'append' }),
      storeReadSeconds: this.storeSeconds.labels({ operation: 'read' }),
      operation(action) {
        let series = byAction.get(action);
        if (series === undefined) {
          series = operations.labels({ action });
          byAction.set(action, series);
        }
        series.inc();
      },
    };
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
