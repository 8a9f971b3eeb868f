import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";

// How values returned by the RPCs are written on the page.

/** Milliseconds of a Duration (0 when unset). */
export function durationMs(d: Duration | undefined): number {
  return d === undefined ? 0 : Number(d.seconds) * 1000 + d.nanos / 1e6;
}

/** A Duration as "340 ms", "2.50 s", "3 min 5 s", "2 h 10 min". */
export function durationText(d: Duration | undefined): string {
  return d === undefined ? "—" : spanText(durationMs(d), true);
}

/** A time span in milliseconds, at a precision that suits its size. */
export function spanText(ms: number, precise = false): string {
  if (precise && ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (precise && ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return precise ? `${s.toFixed(2)} s` : `${Math.floor(s)} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ${Math.floor(s % 60)} s`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `${hours} h ${min % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Milliseconds since the epoch of a Timestamp. */
export function timeMs(ts: Timestamp): number {
  return timestampDate(ts).getTime();
}

const pad = (n: number) => String(n).padStart(2, "0");

/** A Timestamp in local time, "2026-11-26 09:30:00"; "—" when unset. */
export function timeText(ts: Timestamp | undefined): string {
  return ts === undefined ? "—" : msText(timeMs(ts));
}

/** Milliseconds since the epoch in local time, as timeText. */
export function msText(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A rate from 0 to 1 as "93.5 %". */
export function percent(rate: number): string {
  return `${(rate * 100).toFixed(1)} %`;
}

/** An enum value's name without its prefix, readable: CIRCUIT_STATE_HALF_OPEN -> "half open". */
export function enumText(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase().replaceAll("_", " ");
}

/** A score as the router sent it, without binary floating-point noise (0.67, not 0.6699999999999999). */
export function scoreText(score: number): string {
  return String(Number(score.toPrecision(12)));
}
