/**
 * The clock that latencies measured across processes are read on: the machine's monotonic clock
 * (`process.hrtime`, CLOCK_MONOTONIC), in ms with sub-ms resolution. It is one clock for every
 * process of the machine, whenever each started.
 *
 * Not `performance.timeOrigin + performance.now()`: `timeOrigin` is the wall clock read once at the
 * process's start, and `now()` runs on the monotonic clock, so two processes started at different
 * moments disagree by however much the wall clock was adjusted in between. On a VM whose wall clock
 * is being slewed that is large: seen at 5 ms per second, i.e. 300 ms between a process started a
 * minute before the other (a bench process and the servers it spawns per run).
 */
export const sharedClockMs = (): number => Number(process.hrtime.bigint()) / 1e6;
