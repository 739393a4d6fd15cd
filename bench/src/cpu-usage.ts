/**
 * CPU accounting from /proc (Linux), readable from outside a process whose event loop is too busy
 * to answer, and for the whole machine, so a run can show how much CPU other processes took while
 * it measured (a shared 2-core machine makes that the first thing to check). Off Linux every
 * function returns undefined and the callers fall back or leave the column empty.
 */
import { readFileSync } from 'node:fs';

/** Linux USER_HZ, the unit of /proc CPU times (100 on every mainstream kernel). */
const TICKS_PER_SECOND = 100;

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function processCpuSeconds(pid: number): number | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * Seconds a process's main thread (its event loop) has spent runnable but waiting for a core, so far
 * (`/proc/<pid>/schedstat`, second field, ns; needs schedstats in the kernel). On a machine with
 * fewer cores than busy processes this is where a token waits that no profile of the process shows.
 */
export function processRunQueueSeconds(pid: number): number | undefined {
  const fields = read(`/proc/${pid}/schedstat`)?.trim().split(/\s+/);
  if (fields === undefined || fields.length < 2) return undefined;
  const ns = Number(fields[1]);
  return Number.isFinite(ns) ? ns / 1e9 : undefined;
}

/**
 * Read and write system calls a process has made so far, all threads (`/proc/<pid>/io` `syscr` +
 * `syscw`: read, readv, recv…, write, writev, send…; not epoll). On a virtual machine each costs
 * microseconds of kernel time that no JavaScript profile shows as the system's own work.
 */
export function processIoCalls(pid: number): number | undefined {
  const io = read(`/proc/${pid}/io`);
  if (io === undefined) return undefined;
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1]);
  const calls = field('syscr') + field('syscw');
  return Number.isFinite(calls) ? calls : undefined;
}

/**
 * The machine's CPU times so far, summed over every core (/proc/stat's first line, in seconds):
 * user nice system idle iowait irq softirq steal (guest is inside user).
 */
function machineTimes(): number[] | undefined {
  const line = read('/proc/stat')?.split('\n', 1)[0];
  if (line === undefined || !line.startsWith('cpu ')) return undefined;
  return line
    .slice(4)
    .trim()
    .split(/\s+/)
    .map((ticks) => Number(ticks) / TICKS_PER_SECOND);
}

/** Busy CPU seconds summed over every core of the machine, by every process. */
export function machineBusySeconds(): number | undefined {
  const times = machineTimes();
  if (times === undefined) return undefined;
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = times;
  return user + nice + system + irq + softirq + steal;
}

/**
 * CPU seconds the hypervisor gave other guests while this machine's cores wanted to run (`steal` in
 * /proc/stat, summed over every core). Counted in `machineBusySeconds` (a core taken away is not
 * ours), and shown on its own: on a shared host it can take a third of the cores for minutes, and a
 * latency measured then says more about the host than about the code.
 */
export function machineStealSeconds(): number | undefined {
  const steal = machineTimes()?.[7];
  return steal !== undefined && Number.isFinite(steal) ? steal : undefined;
}

export const cpuSeconds = (usage: NodeJS.CpuUsage): number => (usage.user + usage.system) / 1e6;
