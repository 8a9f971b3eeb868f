// Summaries of one measurement and of several runs of it.

/** What one measurement of one workload on one target reports. */
export interface Measurement {
  /** Completed calls per second (B5: rows per second). */
  rate: number;
  /** Latency of a call, milliseconds (B5: time to stream all rows). */
  p50Ms: number;
  p99Ms: number;
  /** Calls that did not succeed; any makes the run invalid. */
  errors: number;
  /** Extra figures of the workload (B5: peak RSS of the server). */
  extra?: Record<string, number>;
}

/** The p-th percentile (0-100) of latencies, nearest rank. */
export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The run whose rate is the median (an odd number of runs gives a real run, with its own latencies). */
export function medianRun(runs: Measurement[]): Measurement {
  const sorted = [...runs].sort((a, b) => a.rate - b.rate);
  return sorted[(sorted.length - 1) >> 1]!;
}

/** Latency samples of calls, in milliseconds, without a large array per call. */
export class LatencyRecorder {
  private samples = new Float64Array(1 << 16);
  private n = 0;

  add(ms: number): void {
    if (this.n === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.n++] = ms;
  }

  get count(): number {
    return this.n;
  }

  summary(): { p50Ms: number; p99Ms: number } {
    const sorted = this.samples.slice(0, this.n).sort();
    return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
  }
}
